"""Multi-diffusion (Movie Gen Audio, spec 6.4): audio longer than the model's context window.

At every denoising step the model runs on overlapping windows of the whole sequence (stride <
window, the last window flush with the end), and each frame's velocity is the weighted mean of
the windows' velocities at that frame:

    v[j] = sum_w weight(j - start_w) * v_w[j - start_w] / sum_w weight(j - start_w)

with triangular weights (peak at the window's centre, the paper's choice: a window's edges, where
its context is one-sided, count least) or uniform ones. Triangular weights are
1 - |2 (k + 1/2) / window - 1| for position k: never 0, so a frame only one window covers (the
sequence's ends) keeps that window's velocity.

The blend is a velocity function over the full sequence, so any sampler of SAMPLERS runs it: the
whole sampling loop stays one lax.scan over steps inside the caller's jit, the windows of a step
either folded into the model's batch (one forward, fastest) or run one after another (lax.map,
memory of one window).
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.configs.registries import SAMPLERS

WEIGHTINGS = ("triangular", "uniform")


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """First frames of the windows covering [0, length): every `stride` frames, plus one flush
    with the end when the stride does not land there. A sequence within one window is one window."""
    if not 1 <= stride <= window:
        raise ValueError(f"multi-diffusion: need 1 <= stride <= window, got stride {stride}, "
                         f"window {window}")
    if length <= window:
        return np.zeros(1, np.int64)
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return np.asarray(starts, np.int64)


def window_weights(window: int, weighting: str = "triangular") -> np.ndarray:
    """[window] blending weight of each position inside a window."""
    if weighting == "triangular":
        return 1.0 - np.abs(2.0 * (np.arange(window) + 0.5) / window - 1.0)
    if weighting == "uniform":
        return np.ones(window)
    raise ValueError(f"multi-diffusion weighting {weighting!r} unknown; choose one of "
                     f"{', '.join(WEIGHTINGS)}")


def frame_weight_sums(length: int, window: int, stride: int,
                      weighting: str = "triangular") -> np.ndarray:
    """[length] summed weight of the windows covering each frame (the blend's normaliser)."""
    window = min(window, length)
    sums = np.zeros(length)
    for start in window_starts(length, window, stride):
        sums[start:start + window] += window_weights(window, weighting)
    return sums


def multi_diffusion_velocity(velocity_fn: Callable, length: int, *, window: int, stride: int,
                             weighting: str = "triangular",
                             windows_in_batch: bool = True) -> Callable:
    """The blended velocity over `length` frames of a model that sees `window` frames.

    velocity_fn(x [B', W, ...], t [B'], frames, shared) -> v like x, where `frames` is a pytree
    of per-frame conditioning cut to the window ([B', W, ...] leaves: video features resampled
    to the audio frames, audio context and its mask) and `shared` a pytree of per-example
    conditioning (text); B' = B, or windows x B when windows_in_batch.
    Returns fn(x [B, length, ...], t [B], frames [B, length, ...], shared [B, ...]) -> v."""
    window = min(window, length)
    starts = window_starts(length, window, stride)
    n = len(starts)
    index = jnp.asarray(starts[:, None] + np.arange(window)[None, :], jnp.int32)   # [n, W]
    weights = jnp.asarray(window_weights(window, weighting), jnp.float32)
    norm = jnp.asarray(frame_weight_sums(length, window, stride, weighting), jnp.float32)

    def cut(a):  # [B, length, ...] -> [n, B, W, ...]
        return jnp.moveaxis(jnp.take(a, index, axis=1), 1, 0)

    def fn(x, t, frames, shared):
        if x.shape[1] != length:
            raise ValueError(f"multi-diffusion built for {length} frames, got {x.shape[1]}")
        if n == 1:
            return velocity_fn(x, t, frames, shared)
        b = x.shape[0]
        xs, fs = cut(x), jax.tree.map(cut, frames)
        if windows_in_batch:  # window-major rows: [n * B, ...]
            fold = lambda a: a.reshape(n * b, *a.shape[2:])
            tile = lambda a: jnp.broadcast_to(a[None], (n, *a.shape)).reshape(n * b, *a.shape[1:])
            v = velocity_fn(fold(xs), tile(t), jax.tree.map(fold, fs), jax.tree.map(tile, shared))
            v = v.reshape(n, b, *v.shape[1:])
        else:
            v = jax.lax.map(lambda w: velocity_fn(w[0], t, w[1], shared), (xs, fs))
        v = v.astype(jnp.float32) * weights.reshape((1, 1, window) + (1,) * (v.ndim - 3))
        total = jnp.zeros((b, length, *v.shape[3:]), jnp.float32).at[:, index].add(
            jnp.moveaxis(v, 0, 1))
        return (total / norm.reshape((1, length) + (1,) * (v.ndim - 3))).astype(x.dtype)

    return fn


def multi_diffusion_sample(velocity_fn: Callable, x0: jax.Array, ts, frames=None, shared=None, *,
                           window: int, stride: int, weighting: str = "triangular",
                           sampler: str = "euler", windows_in_batch: bool = True) -> jax.Array:
    """Integrate x0 [B, T, ...] (noise) to data along ts with a SAMPLERS solver, the velocity at
    every step blended from overlapping windows (multi_diffusion_velocity's arguments). Call it
    inside jit: it is one scan over the steps."""
    frames = {} if frames is None else frames
    shared = {} if shared is None else shared
    blended = multi_diffusion_velocity(velocity_fn, x0.shape[1], window=window, stride=stride,
                                       weighting=weighting, windows_in_batch=windows_in_batch)
    return SAMPLERS.load(sampler)(lambda x, t: blended(x, t, frames, shared), x0, ts)
