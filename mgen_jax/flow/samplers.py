"""First-order Euler ODE solver from noise (t = 0) to data (t = 1), as one lax.scan."""
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
