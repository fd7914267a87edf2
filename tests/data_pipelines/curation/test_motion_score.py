"""Motion score: stills score ~0, noise very high, a moving disc in between."""
import numpy as np
from data_pipelines.media.sample_folder import moving_scene

from data_pipelines.curation import motion

from . import tiny_config


def test_still_frames_are_below_min_motion():
    still = np.repeat(moving_scene(np.random.default_rng(0), 1, 64, 64, 8), 16, axis=0)
    assert motion.motion_score(still) == 0.0 < tiny_config().min_motion


def test_noise_every_frame_is_above_max_motion():
    noise = np.random.default_rng(1).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)
    assert motion.motion_score(noise) > tiny_config().max_motion


def test_a_moving_disc_lies_between_the_thresholds():
    cfg = tiny_config()
    for seed in range(4):
        clip = moving_scene(np.random.default_rng(seed), 16, 64, 96, cfg.target_fps)
        assert cfg.min_motion < motion.motion_score(clip) < cfg.max_motion


def test_score_is_mean_absolute_luma_change():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1] = 10      # black -> grey 10: every pixel's luma changes by 10
    frames[2, :2] = 10  # then the bottom half goes back to black: half the pixels change by 10
    assert abs(motion.motion_score(frames) - 7.5) < 1e-4
    assert motion.motion_score(frames[:1]) == 0.0
