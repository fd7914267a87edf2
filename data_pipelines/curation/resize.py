"""Resize + centre crop to a bucket's exact height x width (aspect kept, the excess cropped)."""
from __future__ import annotations

import numpy as np


def crop_box(height: int, width: int, out_height: int, out_width: int
             ) -> tuple[float, float, float, float]:
    """The centred (left, top, right, bottom) region of the source with the output's aspect
    ratio, in fractional pixels (PIL resamples from it exactly, so there is no rounding drift)."""
    scale = min(width / out_width, height / out_height)
    crop_w, crop_h = out_width * scale, out_height * scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return left, top, left + crop_w, top + crop_h


def resize_and_crop(frames: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> uint8 [T, out_height, out_width, 3]. Area averaging (BOX) when
    shrinking, so fine detail does not alias; bilinear when enlarging. Deterministic."""
    from PIL import Image
    height, width = frames.shape[1:3]
    box = crop_box(height, width, out_height, out_width)
    shrinking = (box[2] - box[0]) >= out_width
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    out = np.empty((len(frames), out_height, out_width, 3), np.uint8)
    for t, frame in enumerate(frames):
        out[t] = np.asarray(Image.fromarray(frame).resize((out_width, out_height), resample,
                                                          box=box))
    return out
