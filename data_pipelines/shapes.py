"""Synthetic captioned "Shapes" videos: one coloured shape moving in a line.

Every clip shows a single filled shape (circle, square or up-pointing
triangle) in a saturated colour on a black background, moving at constant
speed left, right, up or down. The caption names the three attributes with
paraphrases, so a tiny text-to-video model can learn compositional prompts in
minutes on a CPU, and generated videos can be scored attribute by attribute
(see `mgen_jax.evaluation.attributes`).

A fixed set of (colour, shape, direction) combinations is held out of training
(`held_out_combos`) to test compositional generalisation.
"""
from __future__ import annotations

import re

import numpy as np

# Saturated colours spaced round the hue circle (hues ~0, 55, 125, 185, 225,
# 300 degrees) so a nearest-hue classifier separates them even after blur.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 40, 40),
    "yellow": (240, 220, 30),
    "green": (40, 220, 60),
    "cyan": (30, 215, 235),
    "blue": (45, 85, 255),
    "magenta": (230, 45, 220),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")

Combo = tuple[str, str, str]

# Shape size as a fraction of min(height, width) (shapes_av.py draws from it
# too), and total displacement over the clip as a fraction of the frame extent
# along the motion axis.
SIZE_RANGE = (0.30, 0.45)
_DISPLACEMENT_RANGE = (0.38, 0.55)

SHAPE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "ball", "round shape"),
    "square": ("square", "box", "block", "square shape"),
    "triangle": ("triangle", "triangular shape", "wedge"),
}
DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left", "to the left", "leftward", "towards the left"),
    "right": ("right", "to the right", "rightward", "towards the right"),
    "up": ("up", "upward", "upwards", "towards the top"),
    "down": ("down", "downward", "downwards", "towards the bottom"),
}
_VERBS = ("moving", "drifting", "sliding", "travelling", "gliding", "heading")
_TEMPLATES = (
    "a {c} {s} {v} {d}",
    "a small {c} {s} {v} {d}",
    "{c} {s} {v} {d}",
    "a {c} {s} that is {v} {d}",
    "one {c} {s} {v} {d} across a black background",
    "a {c} {s} {v} {d} on black",
    "video of a {c} {s} {v} {d}",
    "a single {c} {s} {v} steadily {d}",
    "the {c} {s} keeps {v} {d}",
    "on a dark background, a {c} {s} is {v} {d}",
)

# Words recognised by `parse_prompt` (a superset of what captions use, so
# hand-written prompts such as "a blue ball falling" also parse).
_SHAPE_WORDS: dict[str, str] = {
    "circle": "circle", "circles": "circle", "disc": "circle", "disk": "circle",
    "ball": "circle", "round": "circle", "dot": "circle",
    "square": "square", "squares": "square", "box": "square", "block": "square",
    "triangle": "triangle", "triangles": "triangle", "triangular": "triangle",
    "wedge": "triangle",
}
_DIRECTION_WORDS: dict[str, str] = {
    "left": "left", "leftward": "left", "leftwards": "left",
    "right": "right", "rightward": "right", "rightwards": "right",
    "up": "up", "upward": "up", "upwards": "up", "top": "up", "rising": "up",
    "rises": "up", "climbing": "up",
    "down": "down", "downward": "down", "downwards": "down", "bottom": "down",
    "falling": "down", "falls": "down", "sinking": "down", "dropping": "down",
}
_WORD_RE = re.compile(r"[a-z]+")

# Held-out combos. Colour i (in COLOURS order) holds out two combos,
# k = 0, 1, with shape SHAPES[(i + k) % 3] and direction DIRECTIONS[(2i + k) % 4].
# This makes every held-out (colour, shape), (colour, direction) and
# (shape, direction) pair unique, so each pair still appears in training with
# its remaining partners (3 of 4 directions, 2 of 3 shapes, 5 of 6 colours),
# and balances the split: each colour is held out twice, each shape four
# times, each direction three times.
_HELD_OUT: tuple[Combo, ...] = (
    ("red", "circle", "left"),
    ("red", "square", "right"),
    ("yellow", "square", "up"),
    ("yellow", "triangle", "down"),
    ("green", "triangle", "left"),
    ("green", "circle", "right"),
    ("cyan", "circle", "up"),
    ("cyan", "square", "down"),
    ("blue", "square", "left"),
    ("blue", "triangle", "right"),
    ("magenta", "triangle", "up"),
    ("magenta", "circle", "down"),
)


def all_combos() -> tuple[Combo, ...]:
    """All 6 x 3 x 4 = 72 (colour, shape, direction) combinations."""
    return tuple((c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS)


def held_out_combos() -> tuple[Combo, ...]:
    """The fixed combinations never shown in training (see `_HELD_OUT`)."""
    return _HELD_OUT


def train_combos() -> tuple[Combo, ...]:
    """All combinations except the held-out ones, in a fixed order."""
    held = set(_HELD_OUT)
    return tuple(combo for combo in all_combos() if combo not in held)


def canonical_caption(colour: str, shape: str, direction: str) -> str:
    return f"a {colour} {shape} moving {direction}"


def caption(colour: str, shape: str, direction: str, rng: np.random.Generator) -> str:
    """A random paraphrase; the colour word is always the label itself."""
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    shape_word = SHAPE_SYNONYMS[shape][rng.integers(len(SHAPE_SYNONYMS[shape]))]
    direction_phrase = DIRECTION_PHRASES[direction][rng.integers(len(DIRECTION_PHRASES[direction]))]
    verb = _VERBS[rng.integers(len(_VERBS))]
    return template.format(c=colour, s=shape_word, v=verb, d=direction_phrase)


def parse_prompt(text: str) -> Combo | None:
    """Find (colour, shape, direction) words in free text.

    Returns None unless exactly one colour, one shape and one direction are
    mentioned (conflicting mentions such as "red ... blue" are ambiguous).
    """
    colours, shapes, directions = set(), set(), set()
    for word in _WORD_RE.findall(text.lower()):
        if word in COLOURS:
            colours.add(word)
        if word in _SHAPE_WORDS:
            shapes.add(_SHAPE_WORDS[word])
        if word in _DIRECTION_WORDS:
            directions.add(_DIRECTION_WORDS[word])
    if len(colours) == 1 and len(shapes) == 1 and len(directions) == 1:
        return colours.pop(), shapes.pop(), directions.pop()
    return None


def shape_coverage(shape: str, left: np.ndarray, top: np.ndarray, size: float,
                   height: int, width: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape, per frame: [T, H, W].

    `left`/`top` ([T]) are the shape's bounding-box corner in pixel units.
    Anti-aliasing from the signed distance d to the outline (negative
    inside): a pixel is covered by clip(0.5 - d, 0, 1), exact for straight
    edges, so area and centroid vary smoothly with sub-pixel motion.
    """
    x = np.arange(width)[None, None, :] + 0.5 - left[:, None, None]  # pixel centres,
    y = np.arange(height)[None, :, None] + 0.5 - top[:, None, None]  # bbox frame
    half = size / 2.0
    if shape == "circle":
        distance = np.hypot(x - half, y - half) - half
    elif shape == "square":
        distance = np.maximum(np.abs(x - half), np.abs(y - half)) - half
    elif shape == "triangle":  # apex at top centre, base along the bottom
        # Convex polygon: max over its edges of the distance outside each edge.
        slant = (2.0 * np.abs(x - half) - y) / np.sqrt(5.0)
        distance = np.maximum(slant, y - size)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def render_clip(colour: str, shape: str, direction: str, *, frames: int, height: int,
                width: int, rng: np.random.Generator) -> np.ndarray:
    """Render one clip, uint8 [frames, height, width, 3].

    Size, start position and speed are drawn from `rng`; the shape stays fully
    in frame and travels 38-55% of the frame extent along its motion axis.
    """
    if frames < 2 or min(height, width) < 16:
        raise ValueError(f"need frames >= 2 and height, width >= 16; got {frames}x{height}x{width}")
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    size = rng.uniform(*SIZE_RANGE) * min(height, width)

    horizontal = direction in ("left", "right")
    extent_along, extent_across = (width, height) if horizontal else (height, width)
    room = extent_along - size  # range of the bbox corner along the motion axis
    travel = min(rng.uniform(*_DISPLACEMENT_RANGE) * extent_along, room)
    start = rng.uniform(0.0, room - travel)
    across = np.full(frames, rng.uniform(0.0, extent_across - size))
    along = start + travel * np.linspace(0.0, 1.0, frames)
    if direction in ("left", "up"):  # image axes point right and down
        along = room - along
    left, top = (along, across) if horizontal else (across, along)

    return render_frames(colour, shape, left, top, size, height=height, width=width)


def render_frames(colour: str, shape: str, left: np.ndarray, top: np.ndarray, size: float, *,
                  height: int, width: int) -> np.ndarray:
    """Paint `shape` in `colour` on black with its bounding-box corner at
    (left[t], top[t]) pixels in frame t: uint8 [T, height, width, 3]."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; expected one of {tuple(COLOURS)}")
    rgb = np.asarray(COLOURS[colour], np.float32)
    cover = shape_coverage(shape, np.asarray(left, np.float64), np.asarray(top, np.float64),
                           size, height, width)
    return np.round(cover[..., None] * rgb).astype(np.uint8)
