"""The flow-matching training loss: MSE between predicted and target velocity."""
from typing import Callable

import jax
import jax.numpy as jnp

from mgen_jax.flow.path import interpolate, sample_logit_normal, velocity_target


def flow_matching_loss(velocity_fn: Callable[[jax.Array, jax.Array], jax.Array], x1: jax.Array,
                       key: jax.Array, *, sigma_min: float, t_mean: float = 0.0,
                       t_std: float = 1.0) -> tuple[jax.Array, dict]:
    """velocity_fn(x_t, t) -> v. Returns (mean loss, per-example diagnostics)."""
    key_t, key_noise = jax.random.split(key)
    t = sample_logit_normal(key_t, (x1.shape[0],), t_mean, t_std)
    x0 = jax.random.normal(key_noise, x1.shape, x1.dtype)
    pred = velocity_fn(interpolate(x0, x1, t, sigma_min), t)
    err = jnp.square(pred.astype(jnp.float32) - velocity_target(x0, x1, sigma_min))
    per_example = jnp.mean(err.reshape(err.shape[0], -1), axis=-1)
    return jnp.mean(per_example), {"t": t, "per_example_loss": per_example}
