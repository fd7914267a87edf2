"""Movie Gen prompt formatting: visual text for ByT5 (quotes vs apostrophes), the FPS tag and the
camera-motion prefix."""
import numpy as np
import pytest

from mgen_jax.models.text.prompts import (CAMERA_MOTIONS, format_prompt, quoted_strings,
                                          visual_text)


@pytest.mark.parametrize("prompt,expected", [
    ('A neon sign reading "OPEN 24/7" above a door', "OPEN 24/7"),
    ('A sign saying "OPEN" next to a “Café Rouge” awning', "OPEN Café Rouge"),
    ("A mug with 'Best Dad' printed on it", "Best Dad"),
    ("‘Hello’ in chalk and “World” in paint", "Hello World"),
    ("A dog running on a beach at sunset", ""),
    # apostrophes never quote: contractions, possessives, elisions
    ("Don't stop, it's the dogs' bowl", ""),
    ("Don’t stop, it’s fine", ""),
    ("don't stop 'Believin' now", "Believin"),
    ("the '90s diner with a 'Sunset' sign", "Sunset"),
    ("(‘Menu’) on the board", "Menu"),
    # outermost quotes win; nested quotes stay in the text
    ('A poster: "Joe\'s \'Famous\' Pizza" in red', "Joe's 'Famous' Pizza"),
    ("A banner 'He said \"go\"' flaps", 'He said "go"'),
    # unbalanced: an opening mark without its closing mark is ignored
    ('A "broken quote and more words', ""),
    ('A "first" then a "dangling', "first"),
    ('Mixed “curly" open', ""),
    # empty and blank quotes give nothing; inner whitespace is stripped
    ('"" and "   " and " spaced "', "spaced"),
])
def test_visual_text(prompt, expected):
    assert visual_text(prompt) == expected


def test_quoted_strings_keeps_order():
    assert quoted_strings('"c" then \'b\' then “a”') == ["c", "b", "a"]


def test_format_prompt():
    assert format_prompt("A cat sleeps.", fps=16) == "FPS-16. A cat sleeps."
    assert format_prompt("A cat sleeps.", fps=24, camera_motion="zoom out") == \
        "FPS-24. Camera: zoom out. A cat sleeps."
    assert format_prompt("A cat sleeps.", camera_motion="Pan-Left") == \
        "Camera: pan left. A cat sleeps."
    assert format_prompt("  A cat.  ", fps=16.0, camera_motion="dolly_in") == \
        "FPS-16. Camera: dolly in. A cat."
    assert format_prompt("x", fps=np.int64(24)) == format_prompt("x", fps=np.float32(24)) == \
        "FPS-24. x"  # config and numpy numbers
    assert format_prompt("A cat sleeps.") == "A cat sleeps."
    assert format_prompt("", fps=16) == "FPS-16."
    assert format_prompt("") == ""
    # quotes survive formatting, so ByT5's visual text is the same either way
    prompt = 'A sign "OPEN"'
    assert visual_text(format_prompt(prompt, fps=16, camera_motion="static")) == "OPEN"


def test_camera_motions_are_sixteen_distinct_labels():
    assert len(CAMERA_MOTIONS) == len(set(CAMERA_MOTIONS)) == 16
    for label in CAMERA_MOTIONS:
        assert format_prompt("x", camera_motion=label) == f"Camera: {label}. x"


@pytest.mark.parametrize("kwargs,match", [
    (dict(camera_motion="spin around"), r"'spin around' unknown.*static, zoom in, zoom out"),
    (dict(fps=0), r"fps=0"),
    (dict(fps=12.5), r"fps=12\.5"),
    (dict(fps="16"), r"fps='16'"),
    (dict(fps=True), r"fps=True"),
    (dict(fps=float("nan")), r"fps=nan"),
    (dict(fps=float("inf")), r"fps=inf"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        format_prompt("A cat.", **kwargs)
