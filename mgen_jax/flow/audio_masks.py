"""Masked audio prediction (Movie Gen Audio, spec 6.4): one model for generation, extension and
infilling. Each training example draws a task and a context mask over its latent frames
(1 = known: its clean latents are given to the model as context; 0 = target: generated); the
flow-matching loss counts the target frames only.

    generation   nothing known
    extension    a known prefix or a known suffix (either side equally often: extension runs both
                 ways), the rest generated
    infilling    known prefix and suffix, the middle generated

The fraction of known frames is uniform in [min_context, max_context] (configs/audio_dit.py
audio_masking_config); extension and infilling always leave at least one target frame.
"""
from typing import Callable

import jax
import jax.numpy as jnp

from mgen_jax.flow.path import interpolate, sample_logit_normal, velocity_target

TASKS = ("generation", "extension", "infilling")


def task_probabilities(masking) -> jax.Array:
    """[3] probabilities of TASKS from the masking config (normalised; must not all be 0)."""
    p = [float(masking[name]) for name in TASKS]
    if min(p) < 0 or sum(p) <= 0:
        raise ValueError(f"audio masking: task probabilities {dict(zip(TASKS, p))} must be >= 0 "
                         "and not all 0")
    lo, hi = float(masking["min_context"]), float(masking["max_context"])
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"audio masking: need 0 <= min_context <= max_context <= 1, got "
                         f"{lo}, {hi}")
    return jnp.asarray(p, jnp.float32) / sum(p)


def sample_context_masks(key: jax.Array, batch: int, frames: int,
                         masking) -> tuple[jax.Array, jax.Array]:
    """Random context masks for a batch of clips of `frames` latent frames.

    Returns (mask [B, frames, 1] float32, 1 = known; task [B] int32, an index into TASKS)."""
    probs = task_probabilities(masking)
    if frames < 3 and float(probs[0]) < 1.0:
        raise ValueError(f"audio masking: extension and infilling need >= 3 latent frames, got "
                         f"{frames}")
    k_task, k_frac, k_side, k_split = jax.random.split(key, 4)
    task = jax.random.categorical(k_task, jnp.log(probs), shape=(batch,)).astype(jnp.int32)
    frac = jax.random.uniform(k_frac, (batch,), minval=float(masking["min_context"]),
                              maxval=float(masking["max_context"]))
    idx = jnp.arange(frames)[None, :]
    # Extension: k known frames, 1 <= k <= frames - 1, at the start or at the end.
    k = jnp.clip(jnp.round(frac * frames).astype(jnp.int32), 1, frames - 1)[:, None]
    prefix_side = jax.random.bernoulli(k_side, 0.5, (batch, 1))
    extension = jnp.where(prefix_side, idx < k, idx >= frames - k)
    # Infilling: k >= 2 known frames split between both ends, each end at least one.
    k2 = jnp.clip(k, 2, frames - 1)
    head = 1 + jnp.floor(jax.random.uniform(k_split, (batch, 1)) * (k2 - 1)).astype(jnp.int32)
    infilling = (idx < head) | (idx >= frames - (k2 - head))
    known = jnp.select([task[:, None] == 1, task[:, None] == 2], [extension, infilling], False)
    return known.astype(jnp.float32)[..., None], task


def masked_audio_flow_loss(velocity_fn: Callable, x1: jax.Array, context_mask: jax.Array,
                           key: jax.Array, *, sigma_min: float, t_mean: float = 0.0,
                           t_std: float = 1.0, valid: jax.Array | None = None
                           ) -> tuple[jax.Array, dict]:
    """Flow matching on the target frames of masked audio.

    velocity_fn(x_t, t [B], context [B, T, C], context_mask [B, T, 1]) -> v [B, T, C];
    x1 [B, T, C] clean latents; context_mask [B, T, 1] (1 = known, from sample_context_masks);
    valid [B, T] (optional): False on padding frames, which neither count nor are context.
    Every frame is noised; the model sees the known frames' clean latents as context. The loss
    of an example is the mean squared error over its target frames (so an example counts once
    whatever its target length); the batch loss is the mean over examples with any target."""
    key_t, key_noise = jax.random.split(key)
    known = context_mask.astype(x1.dtype)
    if valid is not None:
        known = known * valid[..., None].astype(x1.dtype)
    t = sample_logit_normal(key_t, (x1.shape[0],), t_mean, t_std)
    x0 = jax.random.normal(key_noise, x1.shape, x1.dtype)
    pred = velocity_fn(interpolate(x0, x1, t, sigma_min), t, x1 * known, known)
    err = jnp.mean(jnp.square(pred.astype(jnp.float32) - velocity_target(x0, x1, sigma_min)), -1)
    target = 1.0 - known[..., 0].astype(jnp.float32)
    if valid is not None:
        target = target * valid.astype(jnp.float32)
    count = jnp.sum(target, axis=1)
    per_example = jnp.sum(err * target, axis=1) / jnp.maximum(count, 1.0)
    present = count > 0
    loss = jnp.sum(jnp.where(present, per_example, 0.0)) / jnp.maximum(jnp.sum(present), 1)
    return loss, {"t": t, "per_example_loss": per_example, "target_frames": count}
