"""The shape classifier is calibrated on ground truth: right on fresh renders, sharp or blurred
within the calibrated range, and it abstains rather than guesses when no shape is recognisable."""
import numpy as np
import pytest

from data_pipelines import shapes
from mgen_jax.evaluation.attributes import _measure, evaluate_videos, measure_attributes
from mgen_jax.evaluation.shape_classifier import (BLUR_SIGMAS, CALIBRATION_SEED,
                                                  calibrated_classifier, degrade)


@pytest.fixture(scope="module")
def held_out_renders():
    """Fresh ground truth (a seed the calibration never used), at the quickstart's size."""
    rng = np.random.default_rng(CALIBRATION_SEED + 1)
    combos = [c for c in shapes.held_out_combos() for _ in range(3)]
    return [shapes.render_clip(*c, frames=16, height=32, width=32, rng=rng) for c in combos], combos


@pytest.mark.parametrize("sigma", [0.0, 1.0, BLUR_SIGMAS[-1]])
def test_ground_truth_is_recognised_sharp_and_blurred(held_out_renders, sigma):
    videos, combos = held_out_renders
    rng = np.random.default_rng(3)
    result = evaluate_videos([degrade(v, sigma, 4.0, rng) for v in videos], combos)
    assert result["shape_accuracy"] >= 0.97, result["shape_accuracy"]


def test_an_unrecognisable_blob_is_not_counted_as_a_shape():
    # An isotropic Gaussian blob moving right: no corners, no apex, no flat edge.
    frames, size = 12, 32
    ys, xs = np.mgrid[:size, :size]
    video = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        blob = np.exp(-((xs - 8 - t) ** 2 + (ys - 16) ** 2) / (2 * 3.0 ** 2))
        video[t] = np.round(blob[..., None] * np.array([40, 220, 60])).astype(np.uint8)
    measured = measure_attributes(video)
    assert measured["colour"] == "green" and measured["direction"] == "right"
    assert measured["shape"] is None


def test_blur_beyond_calibration_makes_it_abstain_not_guess(held_out_renders):
    videos, combos = held_out_renders
    rng = np.random.default_rng(5)
    sigma = 2.5  # 1.7x the strongest calibrated blur: shapes 10-14 px across start to melt
    result = evaluate_videos([degrade(v, sigma, 4.0, rng) for v in videos], combos)
    labels = [p["shape"] for p in result["predictions"]]
    wrong = sum(label is not None and label != c[1] for label, c in zip(labels, combos))
    abstained = sum(label is None for label in labels)
    # Answers it is unsure of are withheld (measured 16 of 36) and few are wrong (measured 1).
    assert abstained >= len(labels) // 4
    assert wrong <= len(labels) // 10


def test_calibration_is_deterministic():
    first = calibrated_classifier(_measure)
    from mgen_jax.evaluation.shape_classifier import ShapeClassifier, calibration_set
    refit = ShapeClassifier(*calibration_set(_measure))
    for a, b in zip(first.means, refit.means):
        np.testing.assert_array_equal(a, b)
