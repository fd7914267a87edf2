"""ODE solvers from noise (t = 0) to data (t = 1), each one lax.scan over the time grid:
first-order Euler (Movie Gen Video) and the second-order explicit midpoint rule (Movie Gen Audio:
64 steps). Same signature, so SAMPLERS (configs/registries.py) can swap them."""
from typing import Callable

import jax
import jax.numpy as jnp


def euler_sample(velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array,
                 ts) -> jax.Array:
    """velocity_fn(x, t[B]) -> v; ts is the increasing time grid [S + 1]."""
    ts = jnp.asarray(ts, jnp.float32)

    def step(x, t_pair):
        t, t_next = t_pair
        v = velocity_fn(x, jnp.full((x.shape[0],), t, jnp.float32))
        return (x + (t_next - t) * v).astype(x.dtype), None

    x, _ = jax.lax.scan(step, x0, (ts[:-1], ts[1:]))
    return x


def midpoint_sample(velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x0: jax.Array,
                    ts) -> jax.Array:
    """Explicit midpoint: a half Euler step to t + h/2, then the full step with the velocity
    there. Two model evaluations per step, local error O(h^3): halving h divides the error by 4.
    velocity_fn(x, t[B]) -> v; ts is the increasing time grid [S + 1]."""
    ts = jnp.asarray(ts, jnp.float32)

    def step(x, t_pair):
        t, t_next = t_pair
        h = t_next - t
        at = lambda s: jnp.full((x.shape[0],), s, jnp.float32)
        half = (x + 0.5 * h * velocity_fn(x, at(t))).astype(x.dtype)
        return (x + h * velocity_fn(half, at(t + 0.5 * h))).astype(x.dtype), None

    x, _ = jax.lax.scan(step, x0, (ts[:-1], ts[1:]))
    return x
