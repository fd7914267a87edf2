"""Trim, scene -> pieces of min..max seconds, and resampling to the target fps."""
import numpy as np
import pytest

from data_pipelines.curation import clips


def test_trim_drops_whole_seconds_of_native_frames():
    assert clips.trim_frames(30.0, 2.0) == 60
    assert clips.trim_frames(29.97, 0.0) == 0


def test_a_scene_is_cut_into_max_length_pieces_and_a_short_remainder():
    # 10.5 s at 30 fps from frame 100, pieces of 1..4 s: 4 + 4 + 2.5 s.
    pieces, short = clips.cut_scene(100, 415, 30.0, 1.0, 4.0)
    assert pieces == [(100, 220), (220, 340), (340, 415)] and short == []
    # 4.5 s: one 4 s piece and a 0.5 s remainder that is too short.
    pieces, short = clips.cut_scene(0, 135, 30.0, 1.0, 4.0)
    assert pieces == [(0, 120)] and short == [(120, 135)]
    # A scene shorter than min_seconds is all too short.
    assert clips.cut_scene(5, 20, 30.0, 1.0, 4.0) == ([], [(5, 20)])


@pytest.mark.parametrize("fps", [8.0, 12.0, 23.976, 25.0, 30.0, 60.0])
@pytest.mark.parametrize("frames", [9, 31, 64, 121])
def test_pieces_last_between_min_and_max_seconds(fps, frames):
    pieces, short = clips.cut_scene(0, frames, fps, 1.0, 4.0)
    covered = sorted(pieces + short)
    assert covered[0][0] == 0 and covered[-1][1] == frames  # nothing lost, nothing doubled
    assert all(a[1] == b[0] for a, b in zip(covered[:-1], covered[1:]))
    for first, end in pieces:
        assert 1.0 - 1e-9 <= (end - first) / fps <= 4.0 + 1e-9
    for first, end in short:
        assert (end - first) / fps < 1.0


def test_resampling_30_to_8_fps_keeps_time():
    native = 60  # 2 s at 30 fps
    indices = clips.resample_indices(native, 30.0, 8.0)
    assert len(indices) == 16  # 16 frames at 8 fps = 2 s
    # Frame k shows time k / 8: the native frame nearest to it.
    np.testing.assert_array_equal(indices, np.floor(np.arange(16) * 30 / 8 + 0.5).astype(int))
    assert indices[-1] < native


@pytest.mark.parametrize("native_fps", [6.0, 8.0, 10.0, 24.0, 29.97, 30.0])
def test_resampled_clip_never_outlasts_its_piece(native_fps):
    for native in range(1, 130):
        indices = clips.resample_indices(native, native_fps, 8.0)
        assert len(indices) / 8.0 <= native / native_fps + 1e-9
        assert len(indices) / 8.0 > native / native_fps - 1 / 8.0  # and loses under a frame
        assert np.all(np.diff(indices) >= 0) and (len(indices) == 0 or indices[-1] < native)
