"""The Movie Gen flow-matching transformer: latents + t + text -> velocity.

Blocks are created stacked (leading 'layers' axis) and run with lax.scan over their state (with a
named remat policy, models/dit/remat.py, and an unroll factor; models/dit/stack.py, shared with the
audio DiT); `scan_layers=False` runs the same stacked weights in a Python loop for debugging.

Two entry points share one body:
  * `__call__(latents, t, text, text_mask)`: a batch of same-shape clips;

Text arrives per encoder ({name: embeddings}, {name: mask}); the conditioner projects each to the
width and concatenates them along the sequence (models/text/conditioner.py).
  * `forward_packed(...)`: NaViT-style packing, several clips of any shape in one token sequence,
    each with its own timestep and prompt (block-diagonal attention by segment id).
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.dit.block import NUM_MODULATIONS, RESIDUAL, per_token
from mgen_jax.models.dit.embeddings import (FactorizedPositions, TimestepEmbedder, patchify,
                                            unpatchify)
from mgen_jax.models.dit.stack import run_blocks, stack_blocks
from mgen_jax.models.layers import Dense, RMSNorm
from mgen_jax.models.text.conditioner import TextConditioner
from mgen_jax.parallel.logical_rules import constrain


class DiffusionTransformer(nnx.Module):
    def __init__(self, cfg, *, latent_channels: int, text_dims: tuple[tuple[str, int], ...],
                 dtype=jnp.float32, rngs: nnx.Rngs):
        """text_dims: ((encoder name, output dim), ...) in concatenation order."""
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
        self.conditioner = TextConditioner(tuple(text_dims), w, rngs=rngs)
        self.blocks = stack_blocks(cfg, dtype, rngs=rngs)
        self.final_norm = RMSNorm(w, eps=cfg.norm_eps, use_scale=False, rngs=rngs)
        self.final_modulation = Dense(w, 2 * w, axes=("embed", "mlp"),
                                      kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.final_proj = Dense(w, self.patch_dim, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        _, t, h, w, _ = latent_shape
        pt, ph, pw = self.cfg.patch_size
        return t // pt, h // ph, w // pw

    def _forward_tokens(self, tokens, pos, t, context, context_mask, token_segments=None,
                        text_segments=None):
        """tokens [B, N, patch_dim], pos [1|B, N, W], t [B, S], context [B, L, W] (the
        conditioner's output), context_mask [B, L] -> velocity tokens [B, N, patch_dim] (float32)."""
        b, s = t.shape
        x = constrain(self.patch_embed(tokens), RESIDUAL)
        t_emb = self.timestep(t.reshape(-1)).reshape(b, s, -1)
        modulation = self.modulation(jax.nn.silu(t_emb)).reshape(b, s, NUM_MODULATIONS, -1)
        x = run_blocks(self.blocks, self.cfg, x, pos, modulation.astype(jnp.float32),
                       context.astype(self.dtype), context_mask, token_segments, text_segments)
        final = self.final_modulation(jax.nn.silu(t_emb)).reshape(b, s, 2, -1)
        final = per_token(final, token_segments)
        x = self.final_norm(x) * (1 + final[:, :, 1]) + final[:, :, 0]
        return self.final_proj(x).astype(jnp.float32)

    def __call__(self, latents: jax.Array, t: jax.Array, text: dict, text_mask: dict) -> jax.Array:
        """latents [B, T, H, W, C], t [B] in [0, 1], text {name: [B, L_i, D_i]}, text_mask
        {name: [B, L_i]} -> predicted velocity, same shape as latents (float32)."""
        grid = self.token_grid(latents.shape)
        context, context_mask = self.conditioner(text, text_mask)
        out = self._forward_tokens(patchify(latents, self.cfg.patch_size),
                                   self.positions(grid)[None], t[:, None], context, context_mask)
        return unpatchify(out, grid, self.cfg.patch_size, self.latent_channels)

    def forward_packed(self, tokens, coords, token_segments, t, text, text_mask) -> jax.Array:
        """Packed clips (see data_pipelines/packing.py): tokens [B, N, patch_dim], coords [B, N, 3]
        integer (t, h, w) token coordinates, token_segments [B, N] in [0, S] (S = padding),
        t [B, S], text {name: [B, S, L_i, D_i]}, text_mask {name: [B, S, L_i]}
        -> velocity tokens [B, N, patch_dim]."""
        b, s = t.shape
        length = sum(m.shape[-1] for m in text_mask.values())
        text_segments = jnp.broadcast_to(jnp.repeat(jnp.arange(s, dtype=jnp.int32), length),
                                         (b, s * length))
        # Project + concatenate per clip, then lay the clips' prompts end to end.
        context, context_mask = self.conditioner(text, text_mask)
        return self._forward_tokens(tokens, self.positions.at(coords), t,
                                    context.reshape(b, s * length, -1),
                                    context_mask.reshape(b, s * length), token_segments,
                                    text_segments)
