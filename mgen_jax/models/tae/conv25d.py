"""2.5D convolutions: a 2D spatial conv followed by a 1D temporal conv (Movie Gen's inflation).

Temporal convs use symmetric replicate padding and start as the identity ("centric" init: the
centre tap is the identity matrix), so an inflated model equals its image model frame by frame.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Conv2D, param


def _centric_identity(key, shape, dtype):
    k, cin, cout = shape
    w = jnp.zeros(shape, dtype)
    return w.at[k // 2].set(jnp.eye(cin, cout, dtype=dtype))


class TemporalConv(nnx.Module):
    """1D conv over T of [B, T, H, W, C]; replicate padding; stride 1 keeps T, stride 2 gives
    ceil(T / 2) frames."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int = 3, stride: int = 1,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        self.kernel = param(rngs, _centric_identity, (kernel, in_ch, out_ch),
                            ("kernel", "conv_in", "conv_out"))
        self.bias = param(rngs, nnx.initializers.zeros, (out_ch,), ("conv_out",))
        self.stride, self.dtype = stride, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        k = self.kernel[...].shape[0]
        left = k // 2
        right = k // 2
        if self.stride > 1 and t % self.stride:
            right += self.stride - t % self.stride  # pad odd lengths so ceil(T/stride) frames come out
        seq = jnp.moveaxis(x, 1, 3).reshape(b * h * w, t, c)
        seq = jnp.pad(seq, ((0, 0), (left, right), (0, 0)), mode="edge")
        y = jax.lax.conv_general_dilated(
            seq.astype(self.dtype), self.kernel[...].astype(self.dtype), (self.stride,), "VALID",
            dimension_numbers=("NWC", "WIO", "NWC"))
        y = y + self.bias[...].astype(self.dtype)
        return jnp.moveaxis(y.reshape(b, h, w, y.shape[1], -1), 3, 1)


class Conv25D(nnx.Module):
    """Spatial 3x3 conv, then (when the model is a video model) a temporal kernel-3 conv."""

    def __init__(self, in_ch: int, out_ch: int, *, temporal: bool = True, rngs: nnx.Rngs):
        self.spatial = Conv2D(in_ch, out_ch, kernel=3, rngs=rngs)
        self.temporal = TemporalConv(out_ch, out_ch, rngs=rngs) if temporal else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.spatial(x)
        return self.temporal(x) if self.temporal is not None else x
