"""Tests for the deterministic Shapes attribute evaluator."""
import numpy as np
import pytest
from scipy import ndimage

from data_pipelines import shapes
from mgen_jax.evaluation.attributes import evaluate_videos, measure_attributes

SIZES = [(16, 32, 32), (17, 40, 48)]
SEEDS = (0, 1, 2)


def _degrade(video, rng, sigma=1.0, noise_std=4.0):
    """Mimic an autoencoder reconstruction: soft edges plus faint noise."""
    blurred = ndimage.gaussian_filter(video.astype(np.float32), sigma=(0, sigma, sigma, 0))
    noisy = blurred + rng.normal(0.0, noise_std, blurred.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: "x".join(map(str, s)))
def renders(request):
    frames, height, width = request.param
    videos, targets = [], []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for combo in shapes.all_combos():
            videos.append(shapes.render_clip(*combo, frames=frames, height=height,
                                             width=width, rng=rng))
            targets.append(combo)
    return videos, targets


def test_ground_truth_renders_are_recognised(renders):
    videos, targets = renders
    result = evaluate_videos(videos, targets)
    assert result["count"] == len(targets) == 72 * len(SEEDS)
    for key in ("colour_accuracy", "shape_accuracy", "direction_accuracy", "all_accuracy"):
        assert result[key] >= 0.98, (key, result[key])
    for prediction in result["predictions"]:
        assert prediction["valid_frames"] == videos[0].shape[0]
        assert prediction["displacement_fraction"] >= 0.35


def test_blurred_noisy_renders_are_recognised(renders):
    videos, targets = renders
    rng = np.random.default_rng(123)
    result = evaluate_videos([_degrade(v, rng) for v in videos], targets)
    for key in ("colour_accuracy", "shape_accuracy", "direction_accuracy", "all_accuracy"):
        assert result[key] >= 0.95, (key, result[key])


def test_raw_measures_match_the_geometry():
    rng = np.random.default_rng(5)
    measured = {shape: measure_attributes(shapes.render_clip(
        "blue", shape, "down", frames=9, height=40, width=48, rng=rng)) for shape in shapes.SHAPES}
    assert measured["triangle"]["vertical_skewness"] == pytest.approx(-0.566, abs=0.06)
    assert measured["square"]["kurtosis_ratio"] == pytest.approx(2.0, abs=0.1)
    assert measured["circle"]["kurtosis_ratio"] == pytest.approx(1.0, abs=0.1)
    fill = {shape: m["fill_ratio"] for shape, m in measured.items()}
    assert fill["square"] > fill["circle"] > fill["triangle"]
    reference_hue = measure_attributes(shapes.render_clip(
        "blue", "square", "left", frames=3, height=32, width=32, rng=rng))["hue"]
    assert reference_hue == pytest.approx(229.0, abs=2.0)
    for m in measured.values():
        assert m["displacement_y"] > 0.35 * 40 and abs(m["displacement_x"]) < 0.5


def test_grey_background_and_missing_frames_are_tolerated():
    rng = np.random.default_rng(9)
    clip = shapes.render_clip("yellow", "triangle", "left", frames=15, height=33, width=37, rng=rng)
    video = clip.astype(np.int16) + 30 + rng.integers(-3, 4, clip.shape)
    video = np.clip(video, 0, 255).astype(np.uint8)
    video[:4] = 30  # the shape only appears from frame 4
    measured = measure_attributes(video)
    labels = (measured["colour"], measured["shape"], measured["direction"])
    assert labels == ("yellow", "triangle", "left")
    assert measured["valid_frames"] == 11


def test_blank_and_pure_noise_videos_have_no_prediction():
    rng = np.random.default_rng(0)
    blank = np.zeros((6, 32, 32, 3), np.uint8)
    noise = np.clip(rng.normal(20, 6, (6, 32, 32, 3)), 0, 255).astype(np.uint8)
    for video in (blank, noise):
        measured = measure_attributes(video)
        assert measured["colour"] is None and measured["shape"] is None
        assert measured["direction"] is None and measured["valid_frames"] == 0
    result = evaluate_videos([blank], [("red", "circle", "left")])
    assert result["all_accuracy"] == 0.0 and result["colour_accuracy"] == 0.0


def test_grey_shape_has_no_colour():
    clip = shapes.render_clip("red", "square", "down", frames=6, height=32, width=32,
                              rng=np.random.default_rng(8))
    grey = np.repeat(clip[..., :1], 3, axis=-1)  # red channel copied: a white square
    measured = measure_attributes(grey)
    assert measured["colour"] is None and measured["saturation"] < 0.05
    assert (measured["shape"], measured["direction"]) == ("square", "down")


def test_single_visible_frame_gives_colour_and_shape_but_no_direction():
    rng = np.random.default_rng(2)
    video = shapes.render_clip("cyan", "square", "up", frames=5, height=32, width=32, rng=rng)
    video[1:] = 0
    measured = measure_attributes(video)
    labels = (measured["colour"], measured["shape"], measured["direction"])
    assert labels == ("cyan", "square", None)


def test_evaluate_videos_scores_each_attribute_against_its_target():
    rng = np.random.default_rng(4)
    combos = [("red", "circle", "left"), ("green", "square", "up"),
              ("magenta", "triangle", "down"), ("blue", "circle", "right"),
              ("yellow", "square", "left")]
    videos = [shapes.render_clip(*c, frames=7, height=32, width=35, rng=rng) for c in combos]
    # Wrong direction for the first two, wrong colour for the third.
    targets = [("red", "circle", "right"), ("green", "square", "down"),
               ("cyan", "triangle", "down")] + combos[3:]
    result = evaluate_videos(np.stack(videos), targets)
    assert result["count"] == 5
    assert result["colour_accuracy"] == pytest.approx(4 / 5)
    assert result["shape_accuracy"] == pytest.approx(1.0)
    assert result["direction_accuracy"] == pytest.approx(3 / 5)
    assert result["all_accuracy"] == pytest.approx(2 / 5)
    assert [p["direction"] for p in result["predictions"]] == [c[2] for c in combos]
    assert result["predictions"][2]["target"] == ("cyan", "triangle", "down")


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        measure_attributes(np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(ValueError):
        evaluate_videos([np.zeros((4, 32, 32, 3), np.uint8)], [])
    with pytest.raises(ValueError):
        evaluate_videos([np.zeros((4, 32, 32, 3), np.uint8)], [("pink", "circle", "left")])
