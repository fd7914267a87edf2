"""The Shapes evaluator's shape classifier, calibrated on ground truth rather than hand-set.

Each video is summarised by three moment features (medians over the frames that show a shape;
see attributes.py): vertical skewness (an up-pointing triangle is strongly negative), the ratio
of fourth cumulants along the image axes to those along the diagonals (2 for a square, 1 for a
circle; Gaussian blur leaves fourth cumulants unchanged) and the standardised excess kurtosis
(-1.2 square, -1.0 disc, 0 for a featureless Gaussian blob).

The classifier is a Gaussian model per shape (quadratic discriminant analysis) fitted on rendered
ground-truth clips of every combination, sharp and blurred (sigma up to BLUR_SIGMAS[-1] pixels
at 32 px) with faint noise, so it is robust to the soft edges of an autoencoder. It abstains
(None, which scores as wrong) when a video's features are far from every calibrated shape or
when two shapes explain them about equally: a blob that is no recognisable shape is not counted
as one by luck. Its limit: far beyond the calibrated blur (sigma >= ~3.5 px on 32 px frames,
i.e. a third of the shape's size) a square's corners are gone and it reads as a circle. The fit
is deterministic (fixed seed) and done once per process; it is written
here with numpy rather than taking scikit-learn as a dependency for ~20 lines of QDA.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
from scipy import ndimage

from data_pipelines.shapes import SHAPES, all_combos, render_clip

FEATURES = ("vertical_skewness", "kurtosis_ratio", "excess_kurtosis")
# Calibration: Gaussian blur sigmas (pixels, at 32x32) and additive noise (uint8 levels).
BLUR_SIGMAS = (0.0, 0.75, 1.5)
NOISE_STD = 4.0
CALIBRATION_SEED = 20261201
CALIBRATION_CLIPS_PER_COMBO = 2
CALIBRATION_SIZE = (8, 32, 32)  # frames, height, width
# Abstain when the best shape's posterior is below this, or when the features lie outside the
# calibrated cloud of that shape (squared Mahalanobis distance above the chi-square(3) 99.9%
# quantile).
MIN_POSTERIOR = 0.8
MAX_MAHALANOBIS_SQ = 16.27
# Added to each class covariance's diagonal (in feature units squared): keeps the sharp-render
# clusters, which are nearly degenerate, from being over-confident.
_COVARIANCE_FLOOR = 1e-3


def degrade(video: np.ndarray, sigma: float, noise_std: float, rng: np.random.Generator):
    """Gaussian blur in space (per frame) plus additive noise, as uint8."""
    out = video.astype(np.float32)
    if sigma > 0:
        out = ndimage.gaussian_filter(out, sigma=(0, sigma, sigma, 0))
    if noise_std > 0:
        out = out + rng.normal(0.0, noise_std, out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class ShapeClassifier:
    """Per-shape Gaussians over FEATURES; `predict` returns a shape name or None (abstain)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        self.means, self.precisions, self.log_norms = [], [], []
        for k in range(len(SHAPES)):
            x = features[labels == k]
            mean = x.mean(axis=0)
            cov = np.cov(x, rowvar=False) + _COVARIANCE_FLOOR * np.eye(x.shape[1])
            self.means.append(mean)
            self.precisions.append(np.linalg.inv(cov))
            self.log_norms.append(-0.5 * np.linalg.slogdet(cov)[1])

    def scores(self, feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(posterior over SHAPES with equal priors, squared Mahalanobis distance to each)."""
        d = np.array([(feature - m) @ p @ (feature - m)
                      for m, p in zip(self.means, self.precisions)])
        log_lik = np.asarray(self.log_norms) - 0.5 * d
        post = np.exp(log_lik - log_lik.max())
        return post / post.sum(), d

    def predict(self, feature) -> str | None:
        feature = np.asarray(feature, np.float64)
        if not np.all(np.isfinite(feature)):
            return None
        posterior, distance = self.scores(feature)
        best = int(posterior.argmax())
        if posterior[best] < MIN_POSTERIOR or distance[best] > MAX_MAHALANOBIS_SQ:
            return None
        return SHAPES[best]


def calibration_set(measure: Callable[[np.ndarray], dict]) -> tuple[np.ndarray, np.ndarray]:
    """Features and shape indices of rendered ground-truth clips, every combination, sharp and
    blurred; clips with no visible shape are left out."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    frames, height, width = CALIBRATION_SIZE
    features, labels = [], []
    for combo in all_combos():
        for _ in range(CALIBRATION_CLIPS_PER_COMBO):
            clip = render_clip(*combo, frames=frames, height=height, width=width, rng=rng)
            for sigma in BLUR_SIGMAS:
                measured = measure(degrade(clip, sigma, NOISE_STD, rng))
                row = [measured[name] for name in FEATURES]
                if np.all(np.isfinite(row)):
                    features.append(row)
                    labels.append(SHAPES.index(combo[1]))
    return np.asarray(features), np.asarray(labels)


@functools.lru_cache(maxsize=None)
def calibrated_classifier(measure: Callable[[np.ndarray], dict]) -> ShapeClassifier:
    """The classifier fitted on `calibration_set(measure)` (once per process and measure)."""
    return ShapeClassifier(*calibration_set(measure))
