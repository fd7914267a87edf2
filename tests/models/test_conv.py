"""The hand-written conv weight gradient equals jax.grad of lax.conv_general_dilated."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.models.conv import conv2d


@pytest.mark.parametrize("kernel, stride, padding", [
    (3, (1, 1), ((1, 1), (1, 1))),
    (3, (2, 2), ((0, 1), (0, 1))),   # the autoencoder's downsampling conv
    (1, (1, 1), ((0, 0), (0, 0))),
])
def test_conv2d_value_and_gradients_match_xla(kernel, stride, padding):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (3, 9, 11, 5))
    w = jax.random.normal(kw, (kernel, kernel, 5, 7))

    def reference(x, w):
        return jax.lax.conv_general_dilated(x, w, stride, padding,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv2d(x, w, stride, padding), reference(x, w), rtol=1e-6)
    loss = lambda f: (lambda x, w: jnp.sum(jnp.sin(f(x, w))))
    ours = jax.grad(loss(lambda x, w: conv2d(x, w, stride, padding)), argnums=(0, 1))(x, w)
    ref = jax.grad(loss(reference), argnums=(0, 1))(x, w)
    for a, b in zip(ours, ref):
        # Same maths, different float32 summation order: compare on the gradient's own scale.
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-5 * float(jnp.max(jnp.abs(b)))
