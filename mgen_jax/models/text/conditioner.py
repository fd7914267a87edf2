"""Text conditioner: each encoder's output -> Linear + LayerNorm to the model width.

The foundation uses one encoder; the Movie Gen three-encoder concatenation builds on this."""
import jax
from flax import nnx

from mgen_jax.models.layers import Dense, LayerNorm


class TextProjection(nnx.Module):
    def __init__(self, text_dim: int, width: int, *, rngs: nnx.Rngs):
        self.proj = Dense(text_dim, width, axes=("mlp", "embed"), rngs=rngs)
        self.norm = LayerNorm(width, rngs=rngs)

    def __call__(self, text: jax.Array) -> jax.Array:
        return self.norm(self.proj(text))
