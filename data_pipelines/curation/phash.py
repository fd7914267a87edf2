"""Perceptual hashes: 64-bit fingerprints that survive re-encoding, resizing and mild noise, so
two copies of one clip (re-uploads, different bitrates) can be found and one dropped."""
from __future__ import annotations

import numpy as np

_THUMBNAIL_SIDE = 32  # luma thumbnail the DCT is taken of
_LOW_SIDE = 8         # the 8 x 8 lowest frequencies give the 64 bits


def phash(frame: np.ndarray) -> np.uint64:
    """DCT hash of one uint8 [H, W, 3] frame: bit i says whether low-frequency coefficient i of
    the 32 x 32 luma thumbnail is above the median of the 63 non-DC ones."""
    from PIL import Image
    from scipy.fft import dctn
    thumbnail = Image.fromarray(frame).convert("L").resize(
        (_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), Image.Resampling.BOX
        if min(frame.shape[:2]) >= _THUMBNAIL_SIDE else Image.Resampling.BILINEAR)
    low = dctn(np.asarray(thumbnail, np.float64), norm="ortho")[:_LOW_SIDE, :_LOW_SIDE].ravel()
    bits = low > np.median(low[1:])  # the DC term (mean brightness) would skew the median
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)  # bit 0 = most significant


def clip_hashes(video: np.ndarray, count: int) -> np.ndarray:
    """uint64 [count]: hashes of `count` evenly spaced frames (first and last included); one
    frame (an image) gives its hash repeated, so every item has the same number."""
    indices = np.round(np.linspace(0, len(video) - 1, count)).astype(np.int64)
    return np.array([phash(video[i]) for i in indices], np.uint64)


def hamming(a, b):
    """Differing bits between hashes (uint64 scalars or arrays, broadcast): int or int array."""
    distance = np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64)))
    return int(distance) if distance.ndim == 0 else distance.astype(np.int64)


def near_duplicate(hashes_a: np.ndarray, hashes_b: np.ndarray, max_hamming: int) -> bool:
    """Whether every pair of corresponding frame hashes lies within max_hamming bits (hash lists
    of different lengths are never duplicates)."""
    hashes_a, hashes_b = np.asarray(hashes_a, np.uint64), np.asarray(hashes_b, np.uint64)
    if hashes_a.shape != hashes_b.shape:
        return False
    return bool(np.all(hamming(hashes_a, hashes_b) <= max_hamming))
