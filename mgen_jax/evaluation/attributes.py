"""Deterministic attribute read-out for generated Shapes videos.

Given a uint8 video [T, H, W, 3], measure which colour, shape and motion
direction it shows, so text-to-video samples can be scored against their
prompts (`evaluate_videos`). Designed for autoencoder reconstructions and
model samples: soft edges, slight colour shifts and faint background noise.

Per frame, the shape mask = pixels whose brightness (max over RGB) lies above
half way between the background level (median brightness) and the shape's
level (a high percentile); only the largest connected blob is kept, which
discards noise specks. A soft weight (brightness rescaled to [0, 1] around the
blob) gives sub-pixel moments. Then:

* colour: nearest reference hue to the hue of the blob's mean RGB (none for
  an unsaturated, grey-ish blob).
* shape: blur adds only to the second cumulant of a shape's coordinate
  distribution, so third and fourth cumulants survive soft edges.
  An up-pointing triangle has strongly negative vertical skewness (about
  -0.57; circle and square 0). A square's fourth cumulant along the image
  axes is twice that along the diagonals (uniform vs triangular marginals),
  a circle's is the same in every direction; the standardised excess
  kurtosis tells a disc (-1) from a featureless blob (0). These features go
  to a classifier calibrated on ground-truth clips, sharp and blurred, which
  abstains on a blob that is no recognisable shape (shape_classifier.py).
* direction: least-squares velocity of the blob centroid; the dominant axis
  and its sign.
"""
from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from data_pipelines.shapes import COLOURS, DIRECTIONS, SHAPES
from mgen_jax.evaluation.shape_classifier import FEATURES, calibrated_classifier

# A frame needs at least this brightness contrast (0-255) to contain a shape.
MIN_CONTRAST = 40.0
# A grey/white shape has no meaningful hue: below this saturation, no colour.
MIN_SATURATION = 0.25
# Brightness percentile taken as the shape's level (shapes cover >= ~4%).
_PEAK_PERCENTILE = 99.0
# Pixels around the blob included in the soft moments, so blurred tails count.
_SOFT_MARGIN_PIXELS = 3

_REFERENCE_HUES = {
    name: 360.0 * colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))[0]
    for name, rgb in COLOURS.items()
}


# Connect pixels within a frame (4-neighbourhood), never across frames.
_IN_FRAME_CONNECTIVITY = np.zeros((3, 3, 3), bool)
_IN_FRAME_CONNECTIVITY[1] = ndimage.generate_binary_structure(2, 1)


def _shape_masks(brightness: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest half-contrast blob per frame.

    Returns (mask [T, H, W], background [T], contrast [T]); frames with too
    little contrast have an empty mask.
    """
    frames = brightness.shape[0]
    background = np.median(brightness, axis=(1, 2))
    contrast = np.percentile(brightness, _PEAK_PERCENTILE, axis=(1, 2)) - background
    visible = contrast >= MIN_CONTRAST
    threshold = background + 0.5 * contrast
    above = (brightness > threshold[:, None, None]) & visible[:, None, None]
    labels, count = ndimage.label(above, structure=_IN_FRAME_CONNECTIVITY)
    if count == 0:
        return above, background, contrast
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    frame_of_label = np.zeros(count + 1, np.int64)
    frame_of_label[labels.ravel()] = np.repeat(np.arange(frames), labels[0].size)
    # Per frame, the label with the largest (size, label) key.
    keys = sizes * (count + 1) + np.arange(count + 1)
    best_key = np.zeros(frames, np.int64)
    np.maximum.at(best_key, frame_of_label[1:], keys[1:])
    best_label = best_key % (count + 1)
    mask = (labels == best_label[:, None, None]) & (best_label[:, None, None] > 0)
    return mask, background, contrast


def _cumulants(weight: np.ndarray, coordinate: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-frame mean and 2nd-4th cumulants of `coordinate` [H, W] under the
    distribution `weight` [T, H, W] (frames with zero weight give nan)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        total = weight.sum(axis=(1, 2))
        mean = (weight * coordinate).sum(axis=(1, 2)) / total
        centred = coordinate - mean[:, None, None]
        k2 = (weight * centred**2).sum(axis=(1, 2)) / total
        k3 = (weight * centred**3).sum(axis=(1, 2)) / total
        k4 = (weight * centred**4).sum(axis=(1, 2)) / total - 3.0 * k2**2
    return mean, k2, k3, k4


def _fill_ratios(mask: np.ndarray) -> np.ndarray:
    """Per-frame mask area over its bounding-box area (nan for empty frames)."""
    def extent(occupied: np.ndarray) -> np.ndarray:  # [T, N] -> [T]
        first = occupied.argmax(axis=1)
        last = occupied.shape[1] - 1 - occupied[:, ::-1].argmax(axis=1)
        return last - first + 1

    area = mask.sum(axis=(1, 2)).astype(np.float64)
    box = extent(mask.any(axis=2)) * extent(mask.any(axis=1))
    return np.where(area > 0, area / np.maximum(box, 1), np.nan)


def _nearest_colour(hue: float) -> str:
    def circular_distance(name: str) -> float:
        d = abs(hue - _REFERENCE_HUES[name]) % 360.0
        return min(d, 360.0 - d)

    return min(COLOURS, key=circular_distance)


def _classify_direction(dx: float, dy: float) -> str:
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"  # image y grows downwards


def measure_attributes(video: np.ndarray) -> dict:
    """Predicted labels plus the raw measures behind them.

    Keys: `colour`, `shape`, `direction` (labels, or None when no frame holds
    a visible shape; direction also needs two such frames, colour a saturated
    shape, shape features the calibrated classifier recognises), `hue`
    (degrees), `saturation` (of the mean shape colour), `fill_ratio` (shape
    area over bounding-box area), `vertical_skewness`, `kurtosis_ratio`,
    `excess_kurtosis`, `displacement_x`, `displacement_y` (fitted centroid
    travel over the whole clip, pixels), `displacement_fraction` (that travel
    over the frame extent on the dominant axis), `valid_frames` (frames
    showing a shape).
    """
    result = _measure(video)
    if result["valid_frames"]:
        result["shape"] = calibrated_classifier(_measure).predict(
            [result[name] for name in FEATURES])
    return result


def _measure(video: np.ndarray) -> dict:
    """measure_attributes without the shape label (the classifier's calibration input)."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected a [T, H, W, 3] video, got shape {video.shape}")
    frames, height, width, _ = video.shape
    pixels = video.astype(np.float64)
    brightness = pixels.max(axis=-1)
    mask, background, contrast = _shape_masks(brightness)
    visible = mask.any(axis=(1, 2))

    nan = float("nan")
    result = {
        "colour": None, "shape": None, "direction": None, "hue": nan,
        "saturation": nan, "fill_ratio": nan, "vertical_skewness": nan,
        "kurtosis_ratio": nan, "excess_kurtosis": nan, "displacement_x": nan, "displacement_y": nan,
        "displacement_fraction": nan, "valid_frames": int(visible.sum()),
    }
    if not visible.any():
        return result

    mean_rgb = pixels[mask].mean(axis=0)
    hue, saturation, _ = colorsys.rgb_to_hsv(*(mean_rgb / 255.0))
    result["hue"], result["saturation"] = float(360.0 * hue), float(saturation)
    if saturation >= MIN_SATURATION:
        result["colour"] = _nearest_colour(result["hue"])

    # Soft weights near the blob give sub-pixel moments that see blurred tails.
    near_blob = ndimage.binary_dilation(
        mask, structure=_IN_FRAME_CONNECTIVITY, iterations=_SOFT_MARGIN_PIXELS)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = (brightness - background[:, None, None]) / contrast[:, None, None]
    weight = np.where(near_blob, np.clip(level, 0.0, 1.0), 0.0)
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    centre_x, k2_x, _, k4_x = _cumulants(weight, xs)
    centre_y, k2_y, k3_y, k4_y = _cumulants(weight, ys)
    k4_diagonals = (_cumulants(weight, (xs + ys) / np.sqrt(2.0))[3]
                    + _cumulants(weight, (xs - ys) / np.sqrt(2.0))[3])
    skewness = k3_y / np.maximum(k2_y, 1e-6) ** 1.5
    # Fourth cumulants of compact shapes are negative; guard 0/0.
    kurtosis_ratio = (k4_x + k4_y) / np.minimum(k4_diagonals, -1e-6)
    excess_kurtosis = (k4_x + k4_y) / np.maximum(k2_x**2 + k2_y**2, 1e-6)
    # Medians over frames ignore the odd smeared frame.
    result["fill_ratio"] = float(np.median(_fill_ratios(mask)[visible]))
    result["vertical_skewness"] = float(np.median(skewness[visible]))
    result["kurtosis_ratio"] = float(np.median(kurtosis_ratio[visible]))
    result["excess_kurtosis"] = float(np.median(excess_kurtosis[visible]))

    if visible.sum() >= 2:
        times = np.flatnonzero(visible).astype(np.float64)
        centroids = np.stack([centre_x[visible], centre_y[visible]], axis=1)
        velocity = np.polyfit(times, centroids, deg=1)[0]  # [vx, vy] pixels/frame
        dx, dy = velocity * (frames - 1)
        result["displacement_x"], result["displacement_y"] = float(dx), float(dy)
        result["direction"] = _classify_direction(dx, dy)
        extent = width if result["direction"] in ("left", "right") else height
        result["displacement_fraction"] = float(max(abs(dx), abs(dy)) / extent)
    return result


def evaluate_videos(videos: Sequence[np.ndarray] | np.ndarray,
                    targets: Sequence[tuple[str, str, str]]) -> dict:
    """Score videos against their (colour, shape, direction) targets.

    Returns `colour_accuracy`, `shape_accuracy`, `direction_accuracy`,
    `all_accuracy` (all three right), `count` and `predictions` (one
    `measure_attributes` dict per video, plus its `target`).
    """
    if len(videos) != len(targets):
        raise ValueError(f"{len(videos)} videos but {len(targets)} targets")
    for colour, shape, direction in targets:
        if colour not in COLOURS or shape not in SHAPES or direction not in DIRECTIONS:
            raise ValueError(f"unknown target {(colour, shape, direction)}")
    predictions = []
    hits = np.zeros((len(videos), 3), bool)
    for i, (video, target) in enumerate(zip(videos, targets)):
        measured = measure_attributes(video)
        measured["target"] = tuple(target)
        predictions.append(measured)
        hits[i] = [measured[key] == want
                   for key, want in zip(("colour", "shape", "direction"), target)]
    count = len(predictions)

    def accuracy(correct: np.ndarray) -> float:
        return float(correct.mean()) if count else float("nan")

    return {
        "colour_accuracy": accuracy(hits[:, 0]),
        "shape_accuracy": accuracy(hits[:, 1]),
        "direction_accuracy": accuracy(hits[:, 2]),
        "all_accuracy": accuracy(hits.all(axis=1)),
        "count": count,
        "predictions": predictions,
    }
