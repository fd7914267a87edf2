"""Classifier-free guidance: one batched forward over conditional and unconditional inputs."""
from typing import Callable

import jax
import jax.numpy as jnp


def guided_velocity(model_fn: Callable, cond, uncond, scale: float) -> Callable:
    """model_fn(x, t, text) -> v. Returns velocity_fn(x, t) = v_u + scale * (v_c - v_u);
    `cond`/`uncond` are pytrees of text inputs with matching shapes."""
    both = jax.tree.map(lambda c, u: jnp.concatenate([c, u], axis=0), cond, uncond)

    def velocity_fn(x, t):
        v = model_fn(jnp.concatenate([x, x], axis=0), jnp.concatenate([t, t], axis=0), both)
        v_cond, v_uncond = jnp.split(v, 2, axis=0)
        return v_uncond + scale * (v_cond - v_uncond)

    return velocity_fn
