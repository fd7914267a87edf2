"""The soundtrack of an audio-visual Shapes clip (shapes_av.py): what is heard is tied to what
is seen, so a video-to-audio model's output can be scored (mgen_jax/evaluation/av_sync.py).

* A continuous tone whose pitch encodes the shape's colour (`TONE_HZ`): six notes a fifth
  (7 semitones) apart, A3 to G#6, so a pitch may be off by up to 3.5 semitones and still name
  its colour, and no harmonic used (2nd to 4th) lands within 1.9 semitones of another note.
* Its timbre encodes the shape (`SHAPE_PARTIALS`): a circle is a pure sine, a square has odd
  harmonics (hollow), a triangle all harmonics (bright). The fundamental always dominates, so
  the pitch is the strongest spectral peak. Partials at or above 0.45 x the sample rate are
  dropped (no aliasing at low test sample rates).
* A click at each bounce: a burst of uniform white noise that starts at the exact (sub-sample)
  contact instant and decays exponentially (`CLICK_DECAY_S`). Loud and long enough that a
  click smeared over 40 ms (what a 25 Hz latent may do to it) still stands out of noise at
  10 dB SNR (see the calibration in tests/evaluation/test_av_sync.py).

Levels keep the sum within [-1, 1] (tone peak `TONE_LEVEL`, click peak `CLICK_LEVEL`), so int16
storage never clips. The tone fades in and out over `FADE_S`, so playback does not click at
its start and end.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from data_pipelines.shapes import COLOURS, SHAPES

# Colour -> fundamental frequency (Hz): 220 * 2^(7k/12), k = 0..5, in COLOURS (hue) order.
TONE_HZ: dict[str, float] = {
    name: 220.0 * 2.0 ** (7 * k / 12) for k, name in enumerate(COLOURS)}
# Shape -> relative amplitude of harmonics 1, 2, 3, ...
SHAPE_PARTIALS: dict[str, tuple[float, ...]] = {
    "circle": (1.0,),
    "square": (1.0, 0.0, 0.3),
    "triangle": (1.0, 0.35, 0.18, 0.08),
}

TONE_LEVEL = 0.2
CLICK_LEVEL = 0.75
CLICK_DECAY_S = 0.006  # exponential time constant of a click
_CLICK_LENGTH_S = 10 * CLICK_DECAY_S  # e^-10: inaudible after this
FADE_S = 0.02
# Partials at or above this fraction of the sample rate are left out.
_MAX_PARTIAL_FRACTION = 0.45


def soundtrack_length(frames: int, fps: float, sample_rate: int) -> int:
    """Samples in the soundtrack of `frames` frames at `fps`: the clip's duration frames / fps."""
    return int(round(frames * sample_rate / fps))


def tone(colour: str, shape: str, *, num_samples: int, sample_rate: int,
         phase: float = 0.0) -> np.ndarray:
    """The colour's note in the shape's timbre, faded in and out: float32 [num_samples]."""
    if colour not in TONE_HZ:
        raise ValueError(f"unknown colour {colour!r}; expected one of {tuple(TONE_HZ)}")
    if shape not in SHAPE_PARTIALS:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    f0 = TONE_HZ[colour]
    if f0 >= _MAX_PARTIAL_FRACTION * sample_rate:
        raise ValueError(f"sample rate {sample_rate} Hz is too low for the {colour} tone "
                         f"({f0:.0f} Hz); need > {f0 / _MAX_PARTIAL_FRACTION:.0f} Hz")
    t = np.arange(num_samples) / sample_rate
    partials = [(k, a) for k, a in enumerate(SHAPE_PARTIALS[shape], start=1)
                if a > 0 and k * f0 < _MAX_PARTIAL_FRACTION * sample_rate]
    wave = sum(a * np.sin(k * (2 * np.pi * f0 * t + phase)) for k, a in partials)
    wave *= TONE_LEVEL / sum(a for _, a in partials)
    fade = min(int(round(FADE_S * sample_rate)), num_samples // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)  # raised cosine
        wave[:fade] *= ramp
        wave[num_samples - fade:] *= ramp[::-1]
    return wave.astype(np.float32)


def clicks(bounce_times: Sequence[float], *, num_samples: int, sample_rate: int,
           rng: np.random.Generator) -> np.ndarray:
    """A decaying white-noise burst starting at each time (seconds): float32 [num_samples].

    The envelope is CLICK_LEVEL * exp(-(t - bounce) / CLICK_DECAY_S) for t >= bounce, evaluated
    at the sample times, so the onset is placed to a fraction of a sample."""
    out = np.zeros(num_samples, np.float64)
    length = int(np.ceil(_CLICK_LENGTH_S * sample_rate))
    for bounce in bounce_times:
        first = int(np.ceil(bounce * sample_rate))  # first sample at or after the contact
        if not 0 <= first < num_samples:
            raise ValueError(f"bounce at {bounce:.4f} s is outside the soundtrack "
                             f"({num_samples / sample_rate:.4f} s)")
        n = np.arange(first, min(first + length, num_samples))
        envelope = CLICK_LEVEL * np.exp(-(n / sample_rate - bounce) / CLICK_DECAY_S)
        out[n] += envelope * rng.uniform(-1.0, 1.0, len(n))
    return out.astype(np.float32)


def synthesize_soundtrack(colour: str, shape: str, bounce_times: Sequence[float], *,
                          num_samples: int, sample_rate: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Tone (random starting phase) plus clicks: float32 [num_samples] in [-1, 1]."""
    phase = rng.uniform(0.0, 2 * np.pi)
    wave = tone(colour, shape, num_samples=num_samples, sample_rate=sample_rate, phase=phase)
    return wave + clicks(bounce_times, num_samples=num_samples, sample_rate=sample_rate, rng=rng)
