"""Motion score: how much a clip moves, to drop stills/slideshows (too little) and flashing or
noisy footage (too much), which a video model learns nothing useful from."""
from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: motion is judged on brightness, as the eye sees it.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def luma(frame: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [H, W] in [0, 255]."""
    return frame.astype(np.float32) @ _LUMA


def motion_score(frames: np.ndarray) -> float:
    """Mean absolute luma change between consecutive frames, in [0, 255] (0 for < 2 frames).
    Call it on frames at the target fps so the thresholds mean the same for every source."""
    if len(frames) < 2:
        return 0.0
    total, previous = 0.0, luma(frames[0])
    for frame in frames[1:]:  # one pair at a time: a full-HD clip's float copy would be GBs
        current = luma(frame)
        total += float(np.abs(current - previous).mean())
        previous = current
    return total / (len(frames) - 1)
