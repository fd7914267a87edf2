"""Joint image/video TAE training (Movie Gen: 1 image batch for every 3 video batches).

Images are 1-frame videos. An image step takes `images_per_clip` evenly spaced frames of every
clip of the step's video batch as separate images, so there is one data pipeline with one
checkpointed position. The image and the video step are two compiled programs (one per shape;
a `lax.cond` holding both runs ~25x slower on XLA:CPU, measured), picked on the host by the step
counter, so a resumed run repeats exactly the image/video pattern of the interrupted one.
"""
from typing import Callable

import jax
import jax.numpy as jnp


def frames_as_images(video: jax.Array, images_per_clip: int) -> jax.Array:
    """[B, T, H, W, C] -> [B * k, 1, H, W, C]: k evenly spaced frames of each clip."""
    b, t = video.shape[:2]
    k = min(images_per_clip, t)
    index = (jnp.arange(k) * t) // k
    frames = jnp.take(video, index, axis=1)
    return frames.reshape((b * k, 1) + video.shape[2:])


def is_image_step(step, image_batches: int, video_batches: int):
    """The first `image_batches` steps of every cycle of image_batches + video_batches."""
    return (step % (image_batches + video_batches)) < image_batches


def image_step(train_step: Callable, images_per_clip: int) -> Callable:
    """`train_step(state, *frozen, batch, key)` on frames of the batch as 1-frame videos."""
    def step(state, *args):
        *frozen, batch, key = args
        images = dict(batch, video=frames_as_images(batch["video"], images_per_clip))
        state, metrics = train_step(state, *frozen, images, key)
        return state, {**metrics, "image_step": jnp.float32(1.0)}
    return step


def video_step(train_step: Callable) -> Callable:
    def step(state, *args):
        state, metrics = train_step(state, *args)
        return state, {**metrics, "image_step": jnp.float32(0.0)}
    return step


class AlternatingStep:
    """Calls the jitted image or video step by the step number, counted on the host from the
    state's step at the first call (one device read), so no per-step synchronisation."""

    def __init__(self, image_fn: Callable, video_fn: Callable, image_batches: int,
                 video_batches: int):
        self.image_fn, self.video_fn = image_fn, video_fn
        self.image_batches, self.video_batches = image_batches, video_batches
        self.step = None

    def __call__(self, state, *args):
        if self.step is None:
            self.step = int(jax.device_get(state.step))
        image = is_image_step(self.step, self.image_batches, self.video_batches)
        self.step += 1
        return (self.image_fn if image else self.video_fn)(state, *args)


def joint_image_video_steps(train_step: Callable, jit: Callable, *, image_batches: int,
                            video_batches: int, images_per_clip: int) -> Callable:
    """jit(step_fn) -> compiled step; returns the host-side alternation of the two programs (or
    the video program alone when image_batches is 0)."""
    if video_batches < 1:
        raise ValueError("tae.video_batches is 0: a TAE for video needs video batches")
    video = jit(video_step(train_step))
    if image_batches == 0:
        return video
    return AlternatingStep(jit(image_step(train_step, images_per_clip)), video, image_batches,
                           video_batches)
