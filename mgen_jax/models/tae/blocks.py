"""Autoencoder building blocks (LDM style, inflated to 2.5D): ResNet block, attention, resampling.

All take and return channels-last videos [B, T, H, W, C]."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.attention import dot_product_attention
from mgen_jax.models.layers import Conv2D, Dense, GroupNorm
from mgen_jax.models.tae.conv25d import Conv25D, TemporalConv


class ResnetBlock(nnx.Module):
    def __init__(self, in_ch: int, out_ch: int, *, groups: int, temporal: bool, rngs: nnx.Rngs):
        self.norm1 = GroupNorm(in_ch, groups=groups, rngs=rngs)
        self.conv1 = Conv25D(in_ch, out_ch, temporal=temporal, rngs=rngs)
        self.norm2 = GroupNorm(out_ch, groups=groups, rngs=rngs)
        self.conv2 = Conv25D(out_ch, out_ch, temporal=temporal, rngs=rngs)
        self.shortcut = Conv2D(in_ch, out_ch, kernel=1, rngs=rngs) if in_ch != out_ch else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (self.shortcut(x) if self.shortcut is not None else x) + h


class _SingleHeadAttention(nnx.Module):
    """Single-head attention over one axis-group of tokens (as in the LDM mid block)."""

    def __init__(self, ch: int, *, groups: int, zero_out: bool, rngs: nnx.Rngs):
        self.norm = GroupNorm(ch, groups=groups, rngs=rngs)
        self.q = Dense(ch, ch, axes=("embed", "heads"), rngs=rngs)
        self.k = Dense(ch, ch, axes=("embed", "heads"), rngs=rngs)
        self.v = Dense(ch, ch, axes=("embed", "heads"), rngs=rngs)
        init = nnx.initializers.zeros if zero_out else None
        self.proj = Dense(ch, ch, axes=("heads", "embed"), kernel_init=init, rngs=rngs)

    def attend(self, tokens: jax.Array, normed: jax.Array) -> jax.Array:
        q, k, v = (f(normed)[:, :, None, :] for f in (self.q, self.k, self.v))  # one head
        out = dot_product_attention(q, k, v)[:, :, 0, :]
        return tokens + self.proj(out)


class SpatialAttention(_SingleHeadAttention):
    """Attention among the H*W positions of each frame."""

    def __init__(self, ch: int, *, groups: int, rngs: nnx.Rngs):
        super().__init__(ch, groups=groups, zero_out=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        out = self.attend(x.reshape(b * t, h * w, c), self.norm(x).reshape(b * t, h * w, c))
        return out.reshape(b, t, h, w, c)


class TemporalAttention(_SingleHeadAttention):
    """Attention among the T frames at each spatial position; zero-initialised output so the
    inflated model starts equal to the image model."""

    def __init__(self, ch: int, *, groups: int, rngs: nnx.Rngs):
        super().__init__(ch, groups=groups, zero_out=True, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        seq = jnp.moveaxis(x, 1, 3).reshape(b * h * w, t, c)
        normed = jnp.moveaxis(self.norm(x), 1, 3).reshape(b * h * w, t, c)
        out = self.attend(seq, normed)
        return jnp.moveaxis(out.reshape(b, h, w, t, c), 3, 1)


class Attention25D(nnx.Module):
    """Spatial attention, then temporal attention (the '2.5D' attention of Movie Gen's TAE)."""

    def __init__(self, ch: int, *, groups: int, temporal: bool, rngs: nnx.Rngs):
        self.spatial = SpatialAttention(ch, groups=groups, rngs=rngs)
        self.temporal = TemporalAttention(ch, groups=groups, rngs=rngs) if temporal else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.spatial(x)
        return self.temporal(x) if self.temporal is not None else x


class Downsample(nnx.Module):
    """Stride-2 spatial conv (LDM pads right/bottom by one) and/or a stride-2 temporal conv with
    replicate padding."""

    def __init__(self, ch: int, *, temporal: bool, spatial: bool = True, rngs: nnx.Rngs):
        if not (spatial or temporal):
            raise ValueError("a Downsample must downsample space, time or both")
        self.spatial = Conv2D(ch, ch, kernel=3, stride=2, padding=0, rngs=rngs) if spatial else None
        self.temporal = TemporalConv(ch, ch, stride=2, rngs=rngs) if temporal else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.spatial is not None:
            x = self.spatial(x, padding=((0, 1), (0, 1)))
        return self.temporal(x) if self.temporal is not None else x


class Upsample(nnx.Module):
    """Nearest-neighbour x2 + conv in space and/or nearest x2 + temporal conv in time."""

    def __init__(self, ch: int, *, temporal: bool, spatial: bool = True, rngs: nnx.Rngs):
        if not (spatial or temporal):
            raise ValueError("an Upsample must upsample space, time or both")
        self.spatial = Conv2D(ch, ch, kernel=3, rngs=rngs) if spatial else None
        self.temporal = TemporalConv(ch, ch, rngs=rngs) if temporal else None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.spatial is not None:
            x = self.spatial(jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3))
        if self.temporal is not None:
            x = self.temporal(jnp.repeat(x, 2, axis=1))
        return x
