"""The multi-diffusion join measure (evaluation/audio_joins.py) on waveforms whose joins are
known to be smooth or to jump."""
import numpy as np

from mgen_jax.evaluation.audio_joins import (FRAME_S, join_discontinuity, level_steps,
                                             window_boundaries_s)

RATE = 8000


def _tone(seconds: float, level) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.asarray(level) * np.sin(2 * np.pi * 440.0 * t)


def test_boundaries_are_window_starts_and_ends():
    # 10 frames, windows of 4 every 2 (the last flush with the end): 0-4, 2-6, 4-8, 6-10.
    np.testing.assert_allclose(window_boundaries_s(10, 4, 2, 0.04), [0.08, 0.16, 0.24, 0.32])
    assert len(window_boundaries_s(4, 4, 2, 0.04)) == 0  # one window: no join


def test_a_level_jump_at_the_joins_shows_and_a_smooth_tone_does_not():
    t = np.arange(3 * RATE) / RATE
    joins = np.array([1.0, 2.0])
    smooth = _tone(3.0, 0.2 + 0.1 * t / 3)                     # slow drift only
    jumpy = _tone(3.0, np.where((t >= 1.0) & (t < 2.0), 0.4, 0.2))  # 6 dB steps at the joins
    many_joins = np.round(np.arange(0.15, 2.9, 0.1), 2)  # enough steps at joins to average
    flat = join_discontinuity([smooth], RATE, many_joins, [[]])
    steps = join_discontinuity([jumpy], RATE, joins, [[]])
    assert 0.5 < flat["ratio"] < 2.0
    assert steps["ratio"] > 20 and steps["join_step_db"] > 2.5
    assert steps["join_steps"] >= 2 and steps["within_steps"] > 200


def test_clicks_near_bounces_count_as_neither():
    wave = _tone(2.0, 0.2)
    click_at = 0.5
    i = int(click_at * RATE)
    wave[i:i + 80] += 0.9  # a loud burst, away from the joins
    with_guard = join_discontinuity([wave], RATE, np.array([1.5]), [[click_at]])
    without = join_discontinuity([wave], RATE, np.array([1.5]), [[]])
    assert with_guard["within_step_db"] < without["within_step_db"] / 3
    steps, times = level_steps(wave, RATE)
    assert len(steps) == len(times) == int(2.0 / FRAME_S) - 1
