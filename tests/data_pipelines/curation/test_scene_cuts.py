"""Scene cuts: a hard cut is found at its frame, smooth motion and noise have none."""
import numpy as np
import pytest
from data_pipelines.media.sample_folder import moving_scene

from data_pipelines.curation import scenes

from . import tiny_config


@pytest.mark.parametrize("cut", [1, 13, 29])
def test_a_hard_cut_starts_a_scene_at_its_frame(cut):
    rng = np.random.default_rng(cut)
    frames = np.concatenate([moving_scene(rng, cut, 64, 96, 12),
                             moving_scene(rng, 30 - cut, 64, 96, 12, inverted=True)])
    assert scenes.scene_cuts(frames, tiny_config().scene_threshold) == [cut]
    assert scenes.scene_spans(30, [cut]) == [(0, cut), (cut, 30)]


def test_smooth_motion_has_no_cut():
    frames = moving_scene(np.random.default_rng(1), 48, 80, 80, 8)
    change = scenes.content_change(frames)
    assert change.shape == (47,) and change.max() > 0  # it does move
    assert scenes.scene_cuts(frames, tiny_config().scene_threshold) == []


def test_noise_on_every_frame_is_one_jittery_scene_not_many_cuts():
    noise = np.random.default_rng(2).integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    change = scenes.content_change(noise)
    assert change.min() > tiny_config().scene_threshold  # every frame would pass the threshold
    assert scenes.scene_cuts(noise, tiny_config().scene_threshold) == []


def test_two_close_cuts_are_both_found():
    rng = np.random.default_rng(3)
    frames = np.concatenate([moving_scene(rng, 10, 64, 64, 8),
                             moving_scene(rng, 3, 64, 64, 8, inverted=True),
                             moving_scene(rng, 10, 64, 64, 8)])
    assert scenes.scene_cuts(frames, tiny_config().scene_threshold) == [10, 13]


def test_hue_difference_wraps_round_the_circle():
    # Hues just either side of red: PIL's HSV puts them at ~0 and ~255, 2 steps apart on the circle.
    red_a = np.full((2, 8, 8, 3), (255, 0, 6), np.uint8)
    red_a[1] = (255, 6, 0)
    assert scenes.content_change(red_a)[0] < 5


def test_scene_spans_cover_the_video_once():
    assert scenes.scene_spans(10, []) == [(0, 10)]
    assert scenes.scene_spans(10, [0, 4, 10, 4]) == [(0, 4), (4, 10)]
