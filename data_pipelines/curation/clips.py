"""Turning a video's frame range into clips: trim the start, cut scenes into pieces of bounded
duration, and resample a piece to the target frame rate."""
from __future__ import annotations

import math

import numpy as np

# Frame counts come from seconds x fps in floating point: 1.0 s x 29.97 fps must not round the
# wrong way because of the last bit.
_EPS = 1e-6


def trim_frames(fps: float, trim_seconds: float) -> int:
    """How many leading native frames trim_seconds drops (sources often open on logos, fades)."""
    return max(0, int(round(trim_seconds * fps)))


def cut_scene(start: int, end: int, fps: float, min_seconds: float,
              max_seconds: float) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split the native frames [start, end) of one scene into consecutive pieces of at most
    max_seconds. Returns (pieces, too_short): [start, end) ranges of the pieces of at least
    min_seconds, and of what is shorter (the whole scene, or the remainder after the last
    piece)."""
    max_frames = max(1, int(math.floor(max_seconds * fps + _EPS)))
    min_frames = max(1, int(math.ceil(min_seconds * fps - _EPS)))
    pieces, too_short = [], []
    for first in range(start, end, max_frames):
        last = min(first + max_frames, end)
        (pieces if last - first >= min_frames else too_short).append((first, last))
    return pieces, too_short


def resample_indices(num_frames: int, fps: float, target_fps: float) -> np.ndarray:
    """int [M]: the native frame nearest in time to each target-rate frame of a piece of
    num_frames native frames. M = floor(num_frames * target / fps), so the resampled clip never
    outlasts the piece: M / target_fps <= num_frames / fps."""
    count = int(math.floor(num_frames * target_fps / fps + _EPS))
    times = np.arange(count) / target_fps
    return np.minimum(np.floor(times * fps + 0.5).astype(np.int64), num_frames - 1)
