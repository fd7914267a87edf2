"""DiT input embeddings: patchify, factorized t/h/w positions, timestep features."""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Dense, param


def patchify(latents: jax.Array, patch) -> jax.Array:
    """[B, T, H, W, C] -> [B, T/pt * H/ph * W/pw, pt*ph*pw*C] (t-major token order)."""
    b, t, h, w, c = latents.shape
    pt, ph, pw = patch
    x = latents.reshape(b, t // pt, pt, h // ph, ph, w // pw, pw, c)
    x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(b, (t // pt) * (h // ph) * (w // pw), pt * ph * pw * c)


def unpatchify(tokens: jax.Array, grid, patch, channels: int) -> jax.Array:
    """Inverse of patchify for a token grid (T/pt, H/ph, W/pw)."""
    b = tokens.shape[0]
    gt, gh, gw = grid
    pt, ph, pw = patch
    x = tokens.reshape(b, gt, gh, gw, pt, ph, pw, channels).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, gt * pt, gh * ph, gw * pw, channels)


class FactorizedPositions(nnx.Module):
    """Learnable tables phi_t, phi_h, phi_w indexed by integer token coordinates and summed, so
    any aspect ratio and length within the tables is supported."""

    def __init__(self, max_positions, width: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.t = param(rngs, init, (max_positions[0], width), ("table", "embed"))
        self.h = param(rngs, init, (max_positions[1], width), ("table", "embed"))
        self.w = param(rngs, init, (max_positions[2], width), ("table", "embed"))

    def __call__(self, grid) -> jax.Array:
        gt, gh, gw = grid
        pos = (self.t[...][:gt, None, None] + self.h[...][None, :gh, None]
               + self.w[...][None, None, :gw])
        return pos.reshape(gt * gh * gw, -1)

    def at(self, coords: jax.Array) -> jax.Array:
        """Embeddings at integer token coordinates [..., 3] = (t, h, w) -> [..., W]."""
        return (jnp.take(self.t[...], coords[..., 0], axis=0)
                + jnp.take(self.h[...], coords[..., 1], axis=0)
                + jnp.take(self.w[...], coords[..., 2], axis=0))


def timestep_features(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal features of t in [0, 1] (scaled to [0, 1000] as diffusion models do)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = (1000.0 * t.astype(jnp.float32))[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nnx.Module):
    """sinusoidal(t) -> Linear -> SiLU -> Linear."""

    def __init__(self, features: int, width: int, *, rngs: nnx.Rngs):
        self.features = features
        self.fc1 = Dense(features, width, axes=("table", "embed"), rngs=rngs)
        self.fc2 = Dense(width, width, axes=("mlp", "embed"), rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.silu(self.fc1(timestep_features(t, self.features))))
