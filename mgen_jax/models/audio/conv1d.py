"""Weight-normalised 1D convolutions over channels-last audio [B, T, C] (the DAC codec's convs).

Weight norm keeps a direction `v` and a magnitude `g` as the parameters and builds the kernel
g * v / ||v|| in every forward pass, exactly as PyTorch's `weight_norm(module, dim=0)` does (no
epsilon), so a DAC checkpoint's weight_g / weight_v map onto g / v one to one. PyTorch takes the
norm per slice of the weight's dim 0: per *output* channel of a Conv1d ([out, in, k]) but per
*input* channel of a ConvTranspose1d ([in, out, k]); the two classes below keep that difference.

Kernels are stored [k, in, out] (our channels-last layout); the transposed conv stores PyTorch's
weight with the same transpose and flips it in the forward pass.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import param

_AXES = ("kernel", "conv_in", "conv_out")


def _norm(v: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(v.astype(jnp.float32)), axis=axes))


def _weight_and_magnitude(rngs: nnx.Rngs, kernel: int, in_ch: int, out_ch: int,
                          norm_axes: tuple[int, ...], magnitude_axis: str, dtype):
    """v from PyTorch's default conv init, U(+-1 / sqrt(fan_in)) with fan_in = k times PyTorch's
    weight dim 1 (in for Conv1d, out for ConvTranspose1d), and g = ||v|| as weight_norm starts:
    the distribution a fresh DAC has. (A variance-1 init saturates the tanh output of a fresh
    codec: the residual units add up.)"""
    fan_in_axes = (0, 1) if norm_axes == (0, 1) else (0, 2)
    v = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform", in_axis=fan_in_axes,
                                          out_axis=2 if fan_in_axes == (0, 1) else 1)(
        rngs.params(), (kernel, in_ch, out_ch), dtype)
    g = nnx.Param(_norm(v, norm_axes).astype(dtype), logical_axes=(magnitude_axis,))
    return nnx.Param(v, logical_axes=_AXES), g


def _kernel(v: jax.Array, g: jax.Array, norm_axes: tuple[int, ...], dtype) -> jax.Array:
    """g * v / ||v||, computed in float32 (the norm of a bf16 kernel loses digits)."""
    v32 = v.astype(jnp.float32)
    scale = g.astype(jnp.float32) / _norm(v32, norm_axes)
    return (v32 * jnp.expand_dims(scale, norm_axes)).astype(dtype)


class WNConv1d(nnx.Module):
    """Conv1d with weight norm per output channel; symmetric zero padding as PyTorch's."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int = 1, stride: int = 1,
                 dilation: int = 1, padding: int = 0, rngs: nnx.Rngs, dtype=jnp.float32,
                 param_dtype=jnp.float32):
        self.v, self.g = _weight_and_magnitude(rngs, kernel, in_ch, out_ch, (0, 1), "conv_out",
                                               param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (out_ch,), ("conv_out",), param_dtype)
        self.stride, self.dilation, self.padding = stride, dilation, padding
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, in] -> [B, (T + 2p - d(k-1) - 1) // s + 1, out]."""
        kernel = _kernel(self.v[...], self.g[...], (0, 1), self.dtype)
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel, (self.stride,), [(self.padding, self.padding)],
            rhs_dilation=(self.dilation,), dimension_numbers=("NWC", "WIO", "NWC"))
        return y + self.bias[...].astype(self.dtype)


class WNConvTranspose1d(nnx.Module):
    """ConvTranspose1d with weight norm per *input* channel (PyTorch's dim 0 of [in, out, k])."""

    def __init__(self, in_ch: int, out_ch: int, *, kernel: int, stride: int, padding: int = 0,
                 rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32):
        self.v, self.g = _weight_and_magnitude(rngs, kernel, in_ch, out_ch, (0, 2), "conv_in",
                                               param_dtype)
        self.bias = param(rngs, nnx.initializers.zeros, (out_ch,), ("conv_out",), param_dtype)
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, in] -> [B, (T - 1) * s - 2p + k, out]: a stride-1 conv of the input dilated
        by s, with the kernel flipped in time, padded by k - 1 - p on both sides."""
        kernel = _kernel(self.v[...], self.g[...], (0, 2), self.dtype)[::-1]
        edge = self.kernel_size - 1 - self.padding
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), kernel, (1,), [(edge, edge)], lhs_dilation=(self.stride,),
            dimension_numbers=("NWC", "WIO", "NWC"))
        return y + self.bias[...].astype(self.dtype)
