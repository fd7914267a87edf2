"""2D convolution with a faster weight gradient on CPU.

XLA:CPU lowers the weight gradient of a small-channel convolution to a very slow convolution
(~20x the forward pass here). We keep XLA's own input gradient and compute the weight gradient
as one matmul of the input patches with the output gradient. Deliberately hand-written: no
library offers this; results equal jax.grad of lax.conv_general_dilated (tested)."""
import functools

import jax
import jax.numpy as jnp

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, stride, padding):
    return jax.lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, w: jax.Array, stride: tuple, padding: tuple) -> jax.Array:
    """x [N, H, W, C], w [kh, kw, C, O], stride (sh, sw), padding ((t, b), (l, r))."""
    return _conv(x, w, stride, padding)


def _conv2d_fwd(x, w, stride, padding):
    return _conv(x, w, stride, padding), (x, w)


def _conv2d_bwd(stride, padding, residuals, g):
    x, w = residuals
    _, input_vjp = jax.vjp(lambda x_: _conv(x_, w, stride, padding), x)
    (dx,) = input_vjp(g)
    kh, kw, c, o = w.shape
    # patches [N, H', W', C * kh * kw], feature order (C, kh, kw).
    patches = jax.lax.conv_general_dilated_patches(
        x, (kh, kw), stride, padding, dimension_numbers=_DIMS)
    dw = jnp.einsum("nhwp,nhwo->po", patches, g.astype(patches.dtype),
                    preferred_element_type=jnp.float32)
    dw = dw.reshape(c, kh, kw, o).transpose(1, 2, 0, 3).astype(w.dtype)
    return dx, dw


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)
