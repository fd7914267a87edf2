"""Basic layers whose parameters carry logical axis names (see parallel/logical_rules.py).

We write these few layers ourselves rather than use nnx.Linear/nnx.Conv so that every parameter
is created with its `logical_axes` metadata in one place, and so compute dtype is explicit.
"""
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[..., jax.Array]


def param(rngs: nnx.Rngs, init: Initializer, shape: Sequence[int], axes: Sequence[str | None],
          dtype=jnp.float32) -> nnx.Param:
    """A parameter with its logical axis names recorded as metadata."""
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {axes} do not match shape {shape}")
    return nnx.Param(init(rngs.params(), tuple(shape), dtype), logical_axes=tuple(axes))


class Dense(nnx.Module):
    """y = x @ W (+ b), contracting the last axis of x."""

    def __init__(self, in_features: int, out_features: int, *, axes=("embed", "mlp"),
                 use_bias: bool = True, kernel_init: Initializer | None = None,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kernel_init = kernel_init or nnx.initializers.lecun_normal()
        self.kernel = param(rngs, kernel_init, (in_features, out_features), axes, param_dtype)
        self.bias = (param(rngs, nnx.initializers.zeros, (out_features,), axes[1:], param_dtype)
                     if use_bias else None)
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class RMSNorm(nnx.Module):
    """Root-mean-square norm, computed in float32."""

    def __init__(self, features: int, *, eps: float = 1e-6, use_scale: bool = True,
                 axis_name: str = "norm", rngs: nnx.Rngs):
        self.scale = (param(rngs, nnx.initializers.ones, (features,), (axis_name,))
                      if use_scale else None)
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        if self.scale is not None:
            y = y * self.scale[...]
        return y.astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32."""

    def __init__(self, features: int, *, eps: float = 1e-6, use_affine: bool = True,
                 axis_name: str = "norm", rngs: nnx.Rngs):
        self.scale = param(rngs, nnx.initializers.ones, (features,), (axis_name,)) if use_affine else None
        self.bias = param(rngs, nnx.initializers.zeros, (features,), (axis_name,)) if use_affine else None
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)


class GroupNorm(nnx.Module):
    """GroupNorm over (spatial..., channels-in-group) for channels-last inputs, in float32.

    Statistics are per frame: a video [B, T, H, W, C] is normalised like T images, which keeps the
    inflated autoencoder identical to the image autoencoder it was initialised from."""

    def __init__(self, channels: int, *, groups: int, eps: float = 1e-6, rngs: nnx.Rngs):
        if channels % groups:
            raise ValueError(f"GroupNorm: {groups} groups do not divide {channels} channels")
        self.scale = param(rngs, nnx.initializers.ones, (channels,), ("norm",))
        self.bias = param(rngs, nnx.initializers.zeros, (channels,), ("norm",))
        self.groups, self.eps = groups, eps

    def __call__(self, x: jax.Array) -> jax.Array:
        *lead, h, w, c = x.shape
        x32 = x.astype(jnp.float32).reshape(*lead, h, w, self.groups, c // self.groups)
        mean = jnp.mean(x32, axis=(-4, -3, -1), keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=(-4, -3, -1), keepdims=True)
        y = ((x32 - mean) * jax.lax.rsqrt(var + self.eps)).reshape(*lead, h, w, c)
        return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class Conv2D(nnx.Module):
    """2D convolution over (H, W) of channels-last inputs with any leading dims; 'SAME'-style
    zero padding (as the LDM autoencoder), optional stride."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1,
                 padding: int | None = None, rngs: nnx.Rngs, dtype=jnp.float32):
        self.kernel = param(rngs, nnx.initializers.lecun_normal(), (kernel, kernel, in_ch, out_ch),
                            ("kernel", "kernel", "conv_in", "conv_out"))
        self.bias = param(rngs, nnx.initializers.zeros, (out_ch,), ("conv_out",))
        self.stride = stride
        self.padding = kernel // 2 if padding is None else padding
        self.dtype = dtype

    def __call__(self, x: jax.Array, padding=None) -> jax.Array:
        *lead, h, w, c = x.shape
        pad = self.padding if padding is None else padding
        pad = ((pad, pad), (pad, pad)) if isinstance(pad, int) else pad
        y = jax.lax.conv_general_dilated(
            x.reshape(-1, h, w, c).astype(self.dtype), self.kernel[...].astype(self.dtype),
            (self.stride, self.stride), tuple(tuple(p) for p in pad),
            dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y + self.bias[...].astype(self.dtype)
        return y.reshape(*lead, *y.shape[1:])
