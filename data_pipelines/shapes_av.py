"""Audio-visual Shapes clips: a shape that bounces off the frame edges, with a soundtrack tied
to what is seen (data_pipelines/soundtrack.py: the colour sets the pitch of a tone, the shape
its timbre, and each bounce makes a click at the contact instant).

The picture is drawn by shapes.py's renderer, so colours, shapes and sizes are the video-only
Shapes ones. The shape starts moving in its labelled direction (left/right/up/down) and travels
1.15-2.4 times the free room along that axis over the visible span (frame 0 to the last frame),
so every clip bounces at least once on that axis; it also drifts 0.2-0.9 times the room
across, and may bounce there too. Each wall reflects the velocity. Contact instants are
computed analytically from the straight-line motion (when the bounding box touches a frame
edge, which for all three shapes is when the shape does), not rounded to frames.

Clips whose bounces come within half a frame of the visible span's ends (a bounce the video
cannot show) or closer together than max(one frame, 0.1 s) (clicks that would merge) are redrawn,
deterministically from the same generator.

Captions are shapes.py's paraphrases plus a bounce phrase; shapes.parse_prompt still reads
(colour, shape, direction) from them, direction being the initial one. The held-out
(colour, shape, direction) combinations are shapes.held_out_combos().
"""
from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines import shapes, soundtrack

# Travel over the visible span as a multiple of the free room (frame extent - shape size).
_ALONG_TRAVERSALS = (1.15, 2.4)
_ACROSS_TRAVERSALS = (0.2, 0.9)
# At most floor(travel / room) + 1 wall contacts per axis.
MAX_BOUNCES = int(_ALONG_TRAVERSALS[1]) + 1 + int(_ACROSS_TRAVERSALS[1]) + 1
_MIN_GAP_S = 0.1
_MAX_DRAWS = 1000

_BOUNCE_PHRASES = (
    ", bouncing off the edges",
    " and bouncing off the walls",
    ", bouncing back and forth",
    " that bounces off the sides of the frame",
    ", clicking at every bounce",
    " with a steady tone, bouncing off the edges",
    ", humming and bouncing",
    ", ricocheting off the walls",
)


@dataclasses.dataclass(frozen=True)
class BouncingMotion:
    """Straight-line motion of the shape's bounding-box corner (x, y) in pixels, reflected at
    the walls of `room` = (width - size, height - size)."""
    start: np.ndarray  # [2] corner at t = 0
    velocity: np.ndarray  # [2] pixels per second, before any reflection
    room: np.ndarray  # [2]

    def position(self, times: np.ndarray) -> np.ndarray:
        """[len(times), 2] corner positions: the unfolded line folded into [0, room]."""
        unfolded = self.start + np.asarray(times, np.float64)[:, None] * self.velocity
        return self.room - np.abs(np.mod(unfolded, 2 * self.room) - self.room)

    def contacts(self, until: float) -> list[tuple[float, int]]:
        """(time, axis) of every wall contact in (0, until), in time order: the unfolded line
        crosses a multiple of the room."""
        out = []
        for axis in (0, 1):
            p0, v, room = self.start[axis], self.velocity[axis], self.room[axis]
            if v == 0:
                continue
            # First multiple of room strictly ahead of p0 in the direction of motion.
            k = np.floor(p0 / room) + 1 if v > 0 else np.ceil(p0 / room) - 1
            while (t := (k * room - p0) / v) < until:
                out.append((float(t), axis))
                k += np.sign(v)
        return sorted(out)


@dataclasses.dataclass(frozen=True)
class AVClip:
    video: np.ndarray  # uint8 [frames, height, width, 3]
    audio: np.ndarray  # float32 [num_samples] in [-1, 1], num_samples = frames / fps * rate
    bounce_times: np.ndarray  # float64 [B] seconds from frame 0, sorted, 1 <= B <= MAX_BOUNCES
    bounce_axes: np.ndarray  # int [B]: 0 = a left/right wall, 1 = a top/bottom wall
    motion: BouncingMotion
    size: float  # shape size in pixels
    fps: float
    sample_rate: int


def draw_motion(direction: str, *, frames: int, height: int, width: int, fps: float,
                size: float, rng: np.random.Generator) -> BouncingMotion:
    """A bouncing motion starting in `direction` whose contacts the clip can show and hear
    apart (see the module docstring)."""
    visible = (frames - 1) / fps  # time of the last frame
    duration = frames / fps  # the soundtrack's length
    margin, min_gap = 0.5 / fps, max(1.0 / fps, _MIN_GAP_S)
    room = np.array([width - size, height - size], np.float64)
    along = 0 if direction in ("left", "right") else 1
    sign = -1.0 if direction in ("left", "up") else 1.0  # image axes point right and down
    for _ in range(_MAX_DRAWS):
        velocity = np.zeros(2)
        velocity[along] = sign * rng.uniform(*_ALONG_TRAVERSALS) * room[along] / visible
        velocity[1 - along] = (rng.choice((-1.0, 1.0)) * rng.uniform(*_ACROSS_TRAVERSALS)
                               * room[1 - along] / visible)
        motion = BouncingMotion(start=rng.uniform(0.0, 1.0, 2) * room, velocity=velocity,
                                room=room)
        times = np.array([t for t, _ in motion.contacts(duration)])
        if (len(times) and times[0] >= margin and times[-1] <= visible - margin
                and np.all(np.diff(times) >= min_gap)):
            return motion
    raise RuntimeError(f"no bouncing motion fits {frames} frames at {fps} fps after "
                       f"{_MAX_DRAWS} draws; use more frames")


def render_av_clip(colour: str, shape: str, direction: str, *, frames: int, height: int,
                   width: int, fps: float, sample_rate: int,
                   rng: np.random.Generator) -> AVClip:
    """One audio-visual clip, everything drawn from `rng` (deterministic per generator)."""
    if frames < 4 or min(height, width) < 16:
        raise ValueError(f"need frames >= 4 and height, width >= 16; got {frames}x{height}x{width}")
    if direction not in shapes.DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {shapes.DIRECTIONS}")
    if shape not in shapes.SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {shapes.SHAPES}")
    if fps <= 0 or sample_rate <= 0:
        raise ValueError(f"fps and sample_rate must be positive, got {fps} and {sample_rate}")
    size = rng.uniform(*shapes.SIZE_RANGE) * min(height, width)
    motion = draw_motion(direction, frames=frames, height=height, width=width, fps=fps,
                         size=size, rng=rng)
    corner = motion.position(np.arange(frames) / fps)
    video = shapes.render_frames(colour, shape, corner[:, 0], corner[:, 1], size,
                                 height=height, width=width)
    contacts = motion.contacts(frames / fps)
    bounce_times = np.array([t for t, _ in contacts], np.float64)
    audio = soundtrack.synthesize_soundtrack(
        colour, shape, bounce_times,
        num_samples=soundtrack.soundtrack_length(frames, fps, sample_rate),
        sample_rate=sample_rate, rng=rng)
    return AVClip(video=video, audio=audio, bounce_times=bounce_times,
                  bounce_axes=np.array([axis for _, axis in contacts], np.int64),
                  motion=motion, size=float(size), fps=float(fps), sample_rate=int(sample_rate))


def av_caption(colour: str, shape: str, direction: str, rng: np.random.Generator) -> str:
    """shapes.caption's paraphrase plus a bounce phrase (parse_prompt reads it the same)."""
    return (shapes.caption(colour, shape, direction, rng)
            + _BOUNCE_PHRASES[rng.integers(len(_BOUNCE_PHRASES))])


def canonical_av_caption(colour: str, shape: str, direction: str) -> str:
    return f"{shapes.canonical_caption(colour, shape, direction)} and bouncing"


def held_out_av_clips(samples_per_combo: int, *, frames: int, height: int, width: int,
                      fps: float, sample_rate: int,
                      seed: int) -> list[tuple[shapes.Combo, AVClip]]:
    """Ground-truth clips of every held-out combination (shapes.held_out_combos), sample j of
    combination i drawn from the generator seeded by (seed, i, j): the evaluation set."""
    return [(combo, render_av_clip(*combo, frames=frames, height=height, width=width, fps=fps,
                                   sample_rate=sample_rate,
                                   rng=np.random.default_rng([seed, i, j])))
            for i, combo in enumerate(shapes.held_out_combos())
            for j in range(samples_per_combo)]
