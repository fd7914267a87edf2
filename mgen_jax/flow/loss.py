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


def packed_flow_matching_loss(velocity_fn: Callable[[jax.Array, jax.Array], jax.Array],
                              x1: jax.Array, segments: jax.Array, num_segments: int,
                              key: jax.Array, *, sigma_min: float, t_mean: float = 0.0,
                              t_std: float = 1.0) -> tuple[jax.Array, dict]:
    """Flow matching on packed token rows (data_pipelines/packing.py).

    x1 [B, N, P] tokens, segments [B, N] in [0, S] (S = padding); each clip (segment) draws its own
    t, and the loss is the mean over clips of each clip's mean squared error, so a clip counts
    once whatever its token count (as in the unpacked loss). velocity_fn(x_t, t [B, S]) -> v."""
    key_t, key_noise = jax.random.split(key)
    b = x1.shape[0]
    t = sample_logit_normal(key_t, (b, num_segments), t_mean, t_std)
    t_tok = jnp.take_along_axis(t, jnp.clip(segments, 0, num_segments - 1), axis=1)
    x0 = jax.random.normal(key_noise, x1.shape, x1.dtype)
    pred = velocity_fn(interpolate(x0, x1, t_tok, sigma_min), t)
    err = jnp.mean(jnp.square(pred.astype(jnp.float32) - velocity_target(x0, x1, sigma_min)), -1)
    onehot = jax.nn.one_hot(segments, num_segments, dtype=jnp.float32)  # padding -> all zeros
    count = jnp.sum(onehot, axis=1)                                          # [B, S]
    per_clip = jnp.einsum("bn,bns->bs", err, onehot) / jnp.maximum(count, 1.0)
    present = count > 0
    loss = jnp.sum(jnp.where(present, per_clip, 0.0)) / jnp.maximum(jnp.sum(present), 1)
    return loss, {"t": t, "per_clip_loss": per_clip, "clip_present": present}
