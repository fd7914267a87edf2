"""The Movie Gen flow-matching transformer: latents + t + text -> velocity.

Blocks are created stacked (leading 'layers' axis) and run with lax.scan over their state, with
an optional remat policy; `scan_layers=False` runs the same stacked weights in a Python loop for
debugging."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.dit.block import NUM_MODULATIONS, TransformerBlock
from mgen_jax.models.dit.embeddings import (FactorizedPositions, TimestepEmbedder, patchify,
                                            unpatchify)
from mgen_jax.models.layers import Dense, RMSNorm
from mgen_jax.models.text.conditioner import TextProjection
from mgen_jax.parallel.logical_rules import constrain

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
}


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
        patch_dim = latent_channels * cfg.patch_size[0] * cfg.patch_size[1] * cfg.patch_size[2]
        self.patch_embed = Dense(patch_dim, w, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)
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
        self.final_proj = Dense(w, patch_dim, axes=("embed", "mlp"),
                                kernel_init=nnx.initializers.zeros, rngs=rngs)

    def token_grid(self, latent_shape) -> tuple[int, int, int]:
        _, t, h, w, _ = latent_shape
        pt, ph, pw = self.cfg.patch_size
        return t // pt, h // ph, w // pw

    def _run_blocks(self, x, pos, modulation, text, text_mask):
        graphdef, stacked = nnx.split(self.blocks)

        def body(carry, layer_state):
            block = nnx.merge(graphdef, layer_state)
            return block(carry, pos, modulation, text, text_mask), None

        policy = self.cfg.remat
        if policy != "none":
            body = jax.checkpoint(body, policy=REMAT_POLICIES[policy], prevent_cse=False)
        if self.cfg.scan_layers:
            x, _ = jax.lax.scan(body, x, stacked)
        else:
            for i in range(self.cfg.depth):
                x, _ = body(x, jax.tree.map(lambda a: a[i], stacked))
        return x

    def __call__(self, latents: jax.Array, t: jax.Array, text: jax.Array,
                 text_mask: jax.Array) -> jax.Array:
        """latents [B, T, H, W, C], t [B] in [0, 1], text [B, L, D_text], text_mask [B, L]
        -> predicted velocity, same shape as latents (float32)."""
        grid = self.token_grid(latents.shape)
        x = self.patch_embed(patchify(latents, self.cfg.patch_size))
        x = constrain(x, ("act_batch", "act_seq", "act_embed"))
        pos = self.positions(grid)
        t_emb = self.timestep(t)
        modulation = self.modulation(jax.nn.silu(t_emb)).reshape(-1, NUM_MODULATIONS, self.cfg.width)
        context = self.text_projection(text).astype(self.dtype)
        x = self._run_blocks(x, pos, modulation, context, text_mask.astype(bool))
        shift, scale = jnp.split(self.final_modulation(jax.nn.silu(t_emb))[:, None], 2, axis=-1)
        x = self.final_norm(x) * (1 + scale) + shift
        out = self.final_proj(x).astype(jnp.float32)
        return unpatchify(out, grid, self.cfg.patch_size, self.latent_channels)
