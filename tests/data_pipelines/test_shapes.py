"""Tests for the synthetic Shapes video generator and its captions."""
import colorsys
import itertools

import numpy as np
import pytest

from data_pipelines import shapes

SIZES = [(16, 32, 32), (17, 40, 48), (2, 16, 16), (5, 16, 31)]


def _hue(rgb):
    return 360.0 * colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))[0]


def test_colours_are_saturated_and_hue_separated():
    assert len(shapes.COLOURS) >= 6
    hues = {name: _hue(rgb) for name, rgb in shapes.COLOURS.items()}
    for a, b in itertools.combinations(hues, 2):
        distance = abs(hues[a] - hues[b]) % 360
        assert min(distance, 360 - distance) >= 40, (a, b)
    for rgb in shapes.COLOURS.values():
        assert colorsys.rgb_to_hsv(*(np.asarray(rgb) / 255.0))[1] > 0.75
        assert max(rgb) >= 200


@pytest.mark.parametrize("frames,height,width", SIZES)
def test_render_clip_keeps_shape_in_frame_and_moves_it(frames, height, width):
    rng = np.random.default_rng(7)
    for colour, shape, direction in shapes.all_combos():
        clip = shapes.render_clip(colour, shape, direction, frames=frames, height=height,
                                  width=width, rng=rng)
        assert clip.shape == (frames, height, width, 3) and clip.dtype == np.uint8
        rgb = np.asarray(shapes.COLOURS[colour], np.float64)
        coverage = clip.astype(np.float64) @ rgb / (rgb @ rgb)  # per-pixel fill in [0, 1]
        # Every pixel is the shape colour scaled by coverage (black background).
        np.testing.assert_allclose(clip, coverage[..., None] * rgb, atol=2.5)
        # Constant area in every frame => the shape is never clipped by the border.
        area = coverage.sum(axis=(1, 2))
        np.testing.assert_allclose(area, np.median(area), rtol=0.06)
        # Size: the shape's extent is 30-45% of min(height, width).
        extent = np.nonzero((coverage[0] > 0.01).any(axis=0))[0]
        size = extent[-1] - extent[0] + 1
        assert 0.30 * min(height, width) - 1 <= size <= 0.45 * min(height, width) + 2
        # Straight constant-speed motion of at least 35% of the frame.
        ys, xs = np.mgrid[:height, :width]
        cx = (coverage * xs).sum(axis=(1, 2)) / area
        cy = (coverage * ys).sum(axis=(1, 2)) / area
        along, across, extent_along, sign = {
            "left": (cx, cy, width, -1), "right": (cx, cy, width, 1),
            "up": (cy, cx, height, -1), "down": (cy, cx, height, 1)}[direction]
        assert sign * (along[-1] - along[0]) >= 0.35 * extent_along
        assert np.ptp(across) < 0.15
        # Constant speed.
        times = np.arange(frames)
        fit = np.polyval(np.polyfit(times, along, 1), times)
        assert np.abs(along - fit).max() < 0.2


def test_render_clip_shapes_have_expected_geometry():
    rng = np.random.default_rng(3)
    fill = {}
    for shape in shapes.SHAPES:
        clip = shapes.render_clip("green", shape, "right", frames=3, height=41, width=47, rng=rng)
        coverage = clip[0, :, :, 1] / shapes.COLOURS["green"][1]
        # Widest row and tallest column, with sub-pixel accuracy.
        widths, heights = coverage.sum(axis=1), coverage.sum(axis=0)
        fill[shape] = coverage.sum() / (widths.max() * heights.max())
        if shape == "triangle":  # points up: row widths grow towards the bottom
            rows = widths[widths > 0.01]
            widest = rows.argmax()
            assert widest >= len(rows) - 2  # the base (the last row may be partial)
            assert np.all(np.diff(rows[: widest + 1]) > 0) and rows[widest] >= 5 * rows[1]
    # The widest triangle row is the partial base row, so this reads a bit high.
    assert 0.47 < fill["triangle"] < 0.58
    assert fill["circle"] == pytest.approx(np.pi / 4, abs=0.03)
    assert fill["square"] == pytest.approx(1.0, abs=0.03)


def test_render_clip_is_deterministic_given_rng():
    a = shapes.render_clip("cyan", "circle", "down", frames=9, height=33, width=21,
                           rng=np.random.default_rng(11))
    b = shapes.render_clip("cyan", "circle", "down", frames=9, height=33, width=21,
                           rng=np.random.default_rng(11))
    c = shapes.render_clip("cyan", "circle", "down", frames=9, height=33, width=21,
                           rng=np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_clip_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        shapes.render_clip("red", "circle", "left", frames=1, height=32, width=32, rng=rng)
    with pytest.raises(ValueError):
        shapes.render_clip("red", "circle", "left", frames=4, height=15, width=32, rng=rng)
    with pytest.raises(ValueError):
        shapes.render_clip("red", "hexagon", "left", frames=4, height=32, width=32, rng=rng)
    with pytest.raises(ValueError):
        shapes.render_clip("red", "circle", "sideways", frames=4, height=32, width=32, rng=rng)
    with pytest.raises(ValueError):
        shapes.render_clip("pink", "circle", "left", frames=4, height=32, width=32, rng=rng)


def test_captions_are_varied_and_parse_back_to_their_labels():
    rng = np.random.default_rng(0)
    for combo in shapes.all_combos():
        for _ in range(25):
            text = shapes.caption(*combo, rng)
            assert combo[0] in text.split()
            assert shapes.parse_prompt(text) == combo, text
        assert shapes.parse_prompt(shapes.canonical_caption(*combo)) == combo
    texts = {shapes.caption("red", "circle", "left", rng) for _ in range(400)}
    assert len(texts) >= 60
    assert sum(" disc " in t or " ball " in t or "round shape" in t for t in texts) > 0
    assert sum("leftward" in t for t in texts) > 0
    assert shapes.canonical_caption("red", "circle", "left") == "a red circle moving left"


def test_parse_prompt_free_text():
    assert shapes.parse_prompt("A Blue BALL, falling!") == ("blue", "circle", "down")
    assert shapes.parse_prompt("magenta wedge drifting rightwards") == (
        "magenta", "triangle", "right")
    assert shapes.parse_prompt("a yellow box heading upward") == ("yellow", "square", "up")
    assert shapes.parse_prompt("a red circle") is None  # no direction
    assert shapes.parse_prompt("a circle moving left") is None  # no colour
    assert shapes.parse_prompt("a red blue circle moving left") is None  # ambiguous
    assert shapes.parse_prompt("a redcircle moving left") is None  # whole words only


def test_held_out_split_keeps_every_part_and_pair_in_training():
    held = shapes.held_out_combos()
    train = shapes.train_combos()
    assert len(held) == 12 and len(set(held)) == 12
    assert set(held) | set(train) == set(shapes.all_combos())
    assert not set(held) & set(train)
    assert len(shapes.all_combos()) == 72
    for position, vocabulary in enumerate((shapes.COLOURS, shapes.SHAPES, shapes.DIRECTIONS)):
        assert {combo[position] for combo in train} == set(vocabulary)
    for combo in held:
        for i, j in ((0, 1), (0, 2), (1, 2)):
            assert any(t[i] == combo[i] and t[j] == combo[j] for t in train), (combo, i, j)
    # Balanced: each colour held out twice, each shape 4x, each direction 3x.
    for position, count in ((0, 2), (1, 4), (2, 3)):
        values = [combo[position] for combo in held]
        assert all(values.count(v) == count for v in values)
    assert shapes.held_out_combos() == held  # fixed, not random
