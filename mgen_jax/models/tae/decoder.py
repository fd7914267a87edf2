"""TAE decoder: latents [B, t, h, w, z] -> video [B, t * 2^td, h * 2^L, w * 2^L, 3]."""
import jax
from flax import nnx

from mgen_jax.configs.tae import spatial_downsamples
from mgen_jax.models.layers import Conv2D, GroupNorm
from mgen_jax.models.tae.blocks import Attention25D, ResnetBlock, Upsample
from mgen_jax.models.tae.conv25d import Conv25D


class Decoder(nnx.Module):
    def __init__(self, cfg, *, out_channels: int = 3, temporal: bool, rngs: nnx.Rngs):
        g = cfg.norm_groups
        chans = [cfg.ch * m for m in cfg.ch_mult]
        num_levels = len(chans)
        block_in = chans[-1]
        self.post_quant_conv = Conv2D(cfg.z_channels, cfg.z_channels, kernel=1, rngs=rngs)
        self.conv_in = Conv25D(cfg.z_channels, block_in, temporal=temporal, rngs=rngs)
        self.mid_block1 = ResnetBlock(block_in, block_in, groups=g, temporal=temporal, rngs=rngs)
        self.mid_attn = (Attention25D(block_in, groups=g, temporal=temporal, rngs=rngs)
                         if cfg.attention else None)
        self.mid_block2 = ResnetBlock(block_in, block_in, groups=g, temporal=temporal, rngs=rngs)
        self.levels = nnx.List()
        for i, level in enumerate(reversed(range(num_levels))):  # deepest level first
            block_out = chans[level]
            blocks = nnx.List()
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, groups=g, temporal=temporal, rngs=rngs))
                block_in = block_out
            up = None
            in_time = temporal and level <= cfg.temporal_downsamples  # mirrors the encoder
            in_space = level <= spatial_downsamples(cfg)
            if level > 0 and (in_time or in_space):
                up = Upsample(block_in, temporal=in_time, spatial=in_space, rngs=rngs)
            self.levels.append(nnx.Dict(blocks=blocks, up=up))
        self.norm_out = GroupNorm(block_in, groups=g, rngs=rngs)
        self.conv_out = Conv25D(block_in, out_channels, temporal=temporal, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        h = self.conv_in(self.post_quant_conv(z))
        h = self.mid_block1(h)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid_block2(h)
        for level in self.levels:
            for block in level["blocks"]:
                h = block(h)
            if level["up"] is not None:
                h = level["up"](h)
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
