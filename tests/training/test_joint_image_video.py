"""Joint image/video TAE steps: the 1:3 pattern follows the step counter (also after a resume),
image steps train on frames as 1-frame videos, two compiled programs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.training.joint_image_video import (AlternatingStep, frames_as_images,
                                                 is_image_step, joint_image_video_steps)
from mgen_jax.training.train_state import TrainState


def test_frames_as_images_takes_evenly_spaced_frames_of_every_clip():
    video = jnp.arange(2 * 6).reshape(2, 6, 1, 1, 1)
    images = frames_as_images(video, 3)
    assert images.shape == (6, 1, 1, 1, 1)
    np.testing.assert_array_equal(images.ravel(), [0, 2, 4, 6, 8, 10])
    assert frames_as_images(video, 10).shape == (12, 1, 1, 1, 1)  # capped at the clip length


def test_one_image_step_in_every_four():
    steps = jnp.arange(12)
    np.testing.assert_array_equal(is_image_step(steps, 1, 3), [1, 0, 0, 0] * 3)
    np.testing.assert_array_equal(is_image_step(steps, 2, 1), [1, 1, 0] * 4)


def test_alternating_steps_follow_the_step_counter_from_a_resumed_state():
    seen = []

    def train_step(state, frozen, batch, key):  # records the shape it was traced with
        seen.append(batch["video"].shape)
        loss = jnp.mean(batch["video"]) * frozen
        return state.replace(step=state.step + 1), {"loss": loss}

    step = joint_image_video_steps(train_step, jax.jit, image_batches=1, video_batches=3,
                                   images_per_clip=4)
    batch = {"video": jnp.ones((2, 8, 4, 4, 3))}
    for start in (0, 6):  # a run resumed at step 6 continues the same pattern
        state = TrainState(step=jnp.asarray(start, jnp.int32), params={}, opt_state=())
        step.step = None if start else step.step
        flags = []
        for _ in range(8):
            state, metrics = step(state, jnp.float32(2.0), batch, jax.random.key(0))
            flags.append(float(metrics["image_step"]))
        expected = [float(s % 4 == 0) for s in range(start, start + 8)]
        assert flags == expected
    assert sorted(set(seen)) == [(2, 8, 4, 4, 3), (8, 1, 4, 4, 3)]  # two programs, each traced once
    assert len(seen) == 2


def test_without_image_batches_there_is_one_program():
    step = joint_image_video_steps(lambda s, b, k: (s, {}), lambda f: f, image_batches=0,
                                   video_batches=3, images_per_clip=4)
    assert not isinstance(step, AlternatingStep)


def test_video_batches_must_exist():
    with pytest.raises(ValueError, match="video_batches"):
        joint_image_video_steps(lambda *a: a, jax.jit, image_batches=1, video_batches=0,
                                images_per_clip=2)
