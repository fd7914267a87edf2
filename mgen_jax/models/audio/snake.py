"""Snake activation (Ziyin et al. 2020), the periodic nonlinearity of the DAC codec:
x + sin^2(alpha x) / alpha, with one learned frequency alpha per channel.

A periodic inductive bias suits waveforms; the 1e-9 keeps 1 / alpha finite at alpha = 0, as in
the `descript-audio-codec` package (whose weights convert onto `alpha` directly)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import param


class Snake1d(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs, param_dtype=jnp.float32):
        self.alpha = param(rngs, nnx.initializers.ones, (channels,), ("norm",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [..., C] -> same shape; computed in x's dtype."""
        alpha = self.alpha[...].astype(x.dtype)
        return x + (1.0 / (alpha + 1e-9)) * jnp.square(jnp.sin(alpha * x))
