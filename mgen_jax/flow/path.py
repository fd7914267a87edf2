"""Movie Gen's flow-matching path (t = 0 is noise, t = 1 is data).

    x_t = t * x1 + (1 - (1 - sigma_min) * t) * x0,    v = dx_t/dt = x1 - (1 - sigma_min) * x0
"""
import jax


def _bcast(t: jax.Array, x: jax.Array) -> jax.Array:
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x0: jax.Array, x1: jax.Array, t: jax.Array, sigma_min: float) -> jax.Array:
    t = _bcast(t, x1)
    return t * x1 + (1.0 - (1.0 - sigma_min) * t) * x0


def velocity_target(x0: jax.Array, x1: jax.Array, sigma_min: float) -> jax.Array:
    return x1 - (1.0 - sigma_min) * x0


def sample_logit_normal(key: jax.Array, shape, mean: float = 0.0, std: float = 1.0) -> jax.Array:
    """t = sigmoid(n), n ~ N(mean, std^2) (SD3 / Movie Gen)."""
    return jax.nn.sigmoid(mean + std * jax.random.normal(key, shape))
