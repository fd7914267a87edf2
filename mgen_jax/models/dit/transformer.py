"""The Movie Gen flow-matching transformer: latents + t + text -> velocity.

Blocks are created stacked (leading 'layers' axis) and run with lax.scan over their state (with a
named remat policy, models/dit/remat.py, and an unroll factor); `scan_layers=False` runs the same
stacked weights in a Python loop for debugging.

Two entry points share one body:
  * `__call__(latents, t, text, text_mask)`: a batch of same-shape clips;
  * `forward_packed(...)`: NaViT-style packing, several clips of any shape in one token sequence,
    each with its own timestep and prompt (block-diagonal attention by segment id).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.dit.block import NUM_MODULATIONS, RESIDUAL, TransformerBlock, per_token
from mgen_jax.models.dit.embeddings import (FactorizedPositions, TimestepEmbedder, patchify,
                                            unpatchify)
from mgen_jax.models.dit.remat import apply_remat
from mgen_jax.models.layers import Dense, RMSNorm
from mgen_jax.models.text.conditioner import TextProjection
from mgen_jax.parallel.logical_rules import constrain


def _stack_blocks(cfg, dtype, rngs: nnx.Rngs) -> TransformerBlock:
    """cfg.depth blocks with parameters stacked on a leading 'layers' axis."""
    keys = jax.random.split(rngs.params(), cfg.depth)

    @nnx.vmap(in_axes=0, out_axes=0)
    def create(key):
        return TransformerBlock(cfg, dtype=dtype, rngs=nnx.Rngs(params=key))

    blocks = create(keys)
    for _, var in nnx.iter_graph(blocks):
        if isinstance(var, nnx.Variable):
            var.set_metadata("logical_axes", ("layers",) + tuple(var.get_metadata()["logical_axes"]))
    return blocks


class DiffusionTransformer(nnx.Module):
    def __init__(self, cfg, *, latent_channels: int, text_dim: int, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        w = cfg.width
        self.cfg, self.latent_channels, self.dtype = cfg, latent_channels, dtype
        self.patch_dim = latent_channels * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.patch_embed = Dense(self.patch_dim, w, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)
        self.positions = FactorizedPositions(cfg.max_positions, w, rngs=rngs)
        self.timestep = TimestepEmbedder(cfg.timestep_features, w, rngs=rngs)
        # Shared adaLN: one projection of the timestep embedding for all layers (plus a small
        # learned per-layer table inside each block). Zero init: every block starts as identity.
        self.modulation = Dense(w, NUM_MODULATIONS * w, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.text_projection = TextProjection(text_dim, w, rngs=rngs)
        self.blocks = _stack_blocks(cfg, dtype, rngs)
        self.final_norm = RMSNorm(w, eps=cfg.norm_eps, use_scale=False, rngs=rngs)
        self.final_modulation = Dense(w, 2 * w, axes=("embed", "mlp"),
                                      kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.final_proj = Dense(w, self.patch_dim, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        _, t, h, w, _ = latent_shape
        pt, ph, pw = self.cfg.patch_size
        return t // pt, h // ph, w // pw

    def _run_blocks(self, x, *args):
        graphdef, stacked = nnx.split(self.blocks)

        def body(carry, layer_state):
            return nnx.merge(graphdef, layer_state)(carry, *args), None

        body = apply_remat(body, self.cfg.remat)
        if self.cfg.scan_layers:
            x, _ = jax.lax.scan(body, x, stacked, unroll=self.cfg.scan_unroll)
        else:
            for i in range(self.cfg.depth):
                x, _ = body(x, jax.tree.map(lambda a: a[i], stacked))
        return x

    def _forward_tokens(self, tokens, pos, t, text, text_mask, token_segments=None,
                        text_segments=None):
        """tokens [B, N, patch_dim], pos [1|B, N, W], t [B, S], text [B, L, D_text]
        -> velocity tokens [B, N, patch_dim] (float32)."""
        b, s = t.shape
        x = constrain(self.patch_embed(tokens), RESIDUAL)
        t_emb = self.timestep(t.reshape(-1)).reshape(b, s, -1)
        modulation = self.modulation(jax.nn.silu(t_emb)).reshape(b, s, NUM_MODULATIONS, -1)
        context = self.text_projection(text).astype(self.dtype)
        x = self._run_blocks(x, pos, modulation.astype(jnp.float32), context, text_mask.astype(bool),
                             token_segments, text_segments)
        final = self.final_modulation(jax.nn.silu(t_emb)).reshape(b, s, 2, -1)
        final = per_token(final, token_segments)
        x = self.final_norm(x) * (1 + final[:, :, 1]) + final[:, :, 0]
        return self.final_proj(x).astype(jnp.float32)

    def __call__(self, latents: jax.Array, t: jax.Array, text: jax.Array,
                 text_mask: jax.Array) -> jax.Array:
        """latents [B, T, H, W, C], t [B] in [0, 1], text [B, L, D_text], text_mask [B, L]
        -> predicted velocity, same shape as latents (float32)."""
        grid = self.token_grid(latents.shape)
        out = self._forward_tokens(patchify(latents, self.cfg.patch_size),
                                   self.positions(grid)[None], t[:, None], text, text_mask)
        return unpatchify(out, grid, self.cfg.patch_size, self.latent_channels)

    def forward_packed(self, tokens, coords, token_segments, t, text, text_mask) -> jax.Array:
        """Packed clips (see data_pipelines/packing.py): tokens [B, N, patch_dim], coords [B, N, 3]
        integer (t, h, w) token coordinates, token_segments [B, N] in [0, S] (S = padding),
        t [B, S], text [B, S, L, D_text], text_mask [B, S, L] -> velocity tokens [B, N, patch_dim]."""
        b, s, length, _ = text.shape
        text_segments = jnp.broadcast_to(jnp.repeat(jnp.arange(s, dtype=jnp.int32), length), (b, s * length))
        return self._forward_tokens(tokens, self.positions.at(coords), t,
                                    text.reshape(b, s * length, -1), text_mask.reshape(b, s * length),
                                    token_segments, text_segments)
