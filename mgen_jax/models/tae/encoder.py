"""TAE encoder: video [B, T, H, W, 3] in [-1, 1] -> posterior mean and log-variance
[B, ceil(T / 2^td), H / 2^L, W / 2^L, z]."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.configs.tae import spatial_downsamples
from mgen_jax.models.layers import Conv2D, GroupNorm
from mgen_jax.models.tae.blocks import Attention25D, Downsample, ResnetBlock
from mgen_jax.models.tae.conv25d import Conv25D


class Encoder(nnx.Module):
    def __init__(self, cfg, *, in_channels: int = 3, temporal: bool, rngs: nnx.Rngs):
        g = cfg.norm_groups
        chans = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = Conv25D(in_channels, cfg.ch, temporal=temporal, rngs=rngs)
        self.levels = nnx.List()
        block_in = cfg.ch
        for level, block_out in enumerate(chans):
            blocks = nnx.List()
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, groups=g, temporal=temporal, rngs=rngs))
                block_in = block_out
            down = None
            # Spatial and temporal downsampling happen in the first levels; a later level that
            # does neither only adds channels.
            in_time = temporal and level < cfg.temporal_downsamples
            in_space = level < spatial_downsamples(cfg)
            if level < len(chans) - 1 and (in_time or in_space):
                down = Downsample(block_in, temporal=in_time, spatial=in_space, rngs=rngs)
            self.levels.append(nnx.Dict(blocks=blocks, down=down))
        self.mid_block1 = ResnetBlock(block_in, block_in, groups=g, temporal=temporal, rngs=rngs)
        self.mid_attn = (Attention25D(block_in, groups=g, temporal=temporal, rngs=rngs)
                         if cfg.attention else None)
        self.mid_block2 = ResnetBlock(block_in, block_in, groups=g, temporal=temporal, rngs=rngs)
        self.norm_out = GroupNorm(block_in, groups=g, rngs=rngs)
        self.conv_out = Conv25D(block_in, 2 * cfg.z_channels, temporal=temporal, rngs=rngs)
        self.quant_conv = Conv2D(2 * cfg.z_channels, 2 * cfg.z_channels, kernel=1, rngs=rngs)
        logvar_init = cfg.get("posterior_logvar_init", 0.0)
        if logvar_init:  # start with a narrow posterior: the decoder sees signal, not noise
            bias = self.quant_conv.bias
            bias[...] = bias[...].at[cfg.z_channels:].set(logvar_init)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = self.conv_in(x)
        for level in self.levels:
            for block in level["blocks"]:
                h = block(h)
            if level["down"] is not None:
                h = level["down"](h)
        h = self.mid_block1(h)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid_block2(h)
        moments = self.quant_conv(self.conv_out(jax.nn.silu(self.norm_out(h))))
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)
