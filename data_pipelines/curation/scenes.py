"""Scene cuts: where a video's content changes abruptly (a hard cut between shots).

A frame starts a new scene when the mean absolute difference between its small HSV thumbnail and
the previous frame's exceeds a threshold, the content detector of PySceneDetect and FFmpeg's scene
score. We compute it here rather than use PySceneDetect because that needs OpenCV, a heavy native
dependency the build workers would otherwise not carry; PIL + numpy do the same in a few lines.

A cut must also stand out from the changes around it (as in PySceneDetect's adaptive detector):
footage that changes a lot on every frame (noise, strobing) is not a run of one-frame scenes but
one jittery scene, which the motion filter then rejects as such.
"""
from __future__ import annotations

import numpy as np

# Thumbnail side: large enough to see a cut, small enough that noise and motion average out.
THUMBNAIL_SIDE = 32
# A cut's change must be this many times the typical (median) change on at least one side of it,
# over this many frames each side.
SPIKE_RATIO = 2.0
SPIKE_WINDOW = 8


def hsv_thumbnails(frames: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """uint8 [T, H, W, 3] RGB -> float32 [T, side, side, 3] HSV, each channel in [0, 255]."""
    from PIL import Image
    thumbnails = [np.asarray(Image.fromarray(frame).resize((side, side), Image.Resampling.BOX)
                             .convert("HSV")) for frame in frames]
    return np.stack(thumbnails).astype(np.float32)


def content_change(frames: np.ndarray) -> np.ndarray:
    """float32 [T - 1]: change from frame t to t + 1, mean absolute HSV difference in [0, 255]."""
    if len(frames) < 2:
        return np.zeros((0,), np.float32)
    hsv = hsv_thumbnails(frames)
    difference = np.abs(np.diff(hsv, axis=0))
    # Hue is an angle: 250 and 5 are 11 apart on PIL's 256-step circle, not 245.
    difference[..., 0] = np.minimum(difference[..., 0], 256.0 - difference[..., 0])
    return difference.mean(axis=(1, 2, 3))


def scene_cuts(frames: np.ndarray, threshold: float) -> list[int]:
    """Indices of the frames that start a new scene (never 0), ascending: frames whose change
    from the previous one exceeds `threshold` and stands out from the changes around it."""
    return cuts_from_changes(content_change(frames), threshold)


def cuts_from_changes(change: np.ndarray, threshold: float) -> list[int]:
    """`scene_cuts` on precomputed changes (change[t]: frame t -> t + 1)."""
    cuts = []
    for t in np.flatnonzero(change > threshold):
        before = change[max(0, t - SPIKE_WINDOW):t]
        after = change[t + 1:t + 1 + SPIKE_WINDOW]
        # At the clip's edges only the side that exists can vouch for calm.
        typical = min((np.median(side) for side in (before, after) if len(side)), default=0.0)
        if change[t] >= SPIKE_RATIO * typical:
            cuts.append(int(t) + 1)
    return cuts


def scene_spans(num_frames: int, cuts: list[int]) -> list[tuple[int, int]]:
    """[start, end) frame ranges of the scenes between `cuts` (cut indices start scenes)."""
    bounds = [0] + [c for c in sorted(cuts) if 0 < c < num_frames] + [num_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
