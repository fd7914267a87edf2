"""Scores a soundtrack against its audio-visual Shapes clip (data_pipelines/shapes_av.py): does
the pitch name the shape's colour, and does a click sound at each bounce?

* Pitch: the median over time of a short-time magnitude spectrum (clicks are brief, so the
  median over ~64 ms frames ignores them) has its strongest peak inside the band of the colour
  notes; parabolic interpolation of the log magnitude places it between bins; the nearest colour
  note on a log-frequency scale is the prediction. A peak less than `MIN_PITCH_PROMINENCE` times
  the band's median level (silence, noise), or over 20 dB below the strongest component at any
  frequency (a sidelobe of a tone outside the band), is no tone: no prediction.
* Onsets: short-time power (10 ms Hann windows, 2 ms hop, 100 Hz-8 kHz whatever the sample
  rate) is whitened bin by bin by its median over time, the steady level of the tone and of
  any steady noise. Bins whose steady level stands far above the typical bin (the tone's
  partials, whose loudness may drift) are left out, so what remains measures broadband
  events. Its mean over bins, smoothed over 20 ms, against its median is the onset strength;
  local maxima within +-50 ms that stand `ONSET_THRESHOLD_MADS` robust deviations (and at
  least a factor `ONSET_MIN_RATIO`) above the median are onsets, timed at their frame's centre
  (a click's energy centroid: ~3.5 ms after its start for these clicks). Onsets within 20 ms of
  the waveform's ends are dropped: a tone's fade in or out, or a model's edge artefact, is no
  bounce (bounces are >= half a frame from the ends). Calibration at 16 kHz (24-72 clips): a
  clean click stands >= 4e4 times above the median, one smeared over 40 ms under noise at 10
  dB SNR 3-6 times, while away from clicks and ends nothing reaches 1.5.
* Synchrony: for each true bounce, the signed offset to the nearest detected onset (inf when the
  soundtrack has none); the report gives the median absolute offset in ms.
* Chance: pitch, the accuracy of always naming the most common target colour (at least
  1 / number of colours); onsets, the median offset when as many onsets as bounces are placed
  uniformly at random in each clip (Monte Carlo, seeded), the score of clicks at random times.

Numpy and scipy only; written here because the measures are specific to this soundtrack and
small (a general onset library would bring its own tuning for music).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, signal

from data_pipelines.soundtrack import TONE_HZ

# Pitch: half the spacing of neighbouring notes beyond the lowest and highest ones.
_NOTE_RATIO = min(b / a for a, b in zip(sorted(TONE_HZ.values()), sorted(TONE_HZ.values())[1:]))
PITCH_BAND_HZ = (min(TONE_HZ.values()) / np.sqrt(_NOTE_RATIO),
                 max(TONE_HZ.values()) * np.sqrt(_NOTE_RATIO))
_PITCH_FRAME_S = 0.064
MIN_PITCH_PROMINENCE = 10.0  # 20 dB over the band's median level
_MIN_PITCH_SHARE = 0.1  # within 20 dB of the strongest component at any frequency

# Onsets.
_ONSET_WINDOW_S = 0.010
_ONSET_HOP_S = 0.002
ONSET_BAND_HZ = (100.0, 8000.0)  # the same analysis at 16 kHz and at 48 kHz
_TONAL_RATIO = 10.0  # steady level over the typical bin's (+ floor): a tonal bin, left out
# Whitening floor, as a fraction of the mean bin power, added to each bin's power and steady
# level: without it the near-empty bins of a clean soundtrack (leakage, rounding) would turn
# tiny level changes (a tone's loudness drifting) into large ratios.
_ONSET_FLOOR = 1e-3
_ONSET_SMOOTH_S = 0.02
ONSET_THRESHOLD_MADS = 6.0
ONSET_MIN_RATIO = 2.0  # strength over its median: a steady signal has no onsets
_ONSET_SEPARATION_S = 0.05  # bounces are >= 0.1 s apart (shapes_av.py)
_ONSET_EDGE_S = 0.02  # a waveform's own start and end are not events


def _as_mono(waveform) -> np.ndarray:
    x = np.asarray(waveform, np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected a mono waveform [samples], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"waveform has {np.sum(~np.isfinite(x))} non-finite samples")
    return x


def estimate_pitch(waveform, sample_rate: int) -> float | None:
    """The dominant frequency (Hz) within PITCH_BAND_HZ, or None when there is no clear tone."""
    x = _as_mono(waveform)
    nperseg = int(2 ** np.round(np.log2(_PITCH_FRAME_S * sample_rate)))
    if len(x) < nperseg:
        x = np.pad(x, (0, nperseg - len(x)))
    _, _, spectrum = signal.stft(x, fs=sample_rate, window="hann", nperseg=nperseg,
                                 noverlap=3 * nperseg // 4, boundary=None, padded=False)
    level = np.median(np.abs(spectrum), axis=1)  # robust to clicks: they last a few frames
    bin_hz = sample_rate / nperseg
    lo = max(int(np.ceil(PITCH_BAND_HZ[0] / bin_hz)), 1)
    hi = min(int(np.floor(PITCH_BAND_HZ[1] / bin_hz)), len(level) - 2)
    if hi <= lo:
        raise ValueError(f"sample rate {sample_rate} Hz is too low for the tone band "
                         f"{PITCH_BAND_HZ[0]:.0f}-{PITCH_BAND_HZ[1]:.0f} Hz")
    band = level[lo:hi + 1]
    peak = lo + int(np.argmax(band))
    # A tone: well above the band's typical level, and not a sidelobe of something louder
    # outside the band.
    if not (level[peak] > MIN_PITCH_PROMINENCE * np.median(band)
            and level[peak] >= _MIN_PITCH_SHARE * level[1:].max()):
        return None
    a, b, c = np.log(level[peak - 1:peak + 2] + 1e-30)
    curvature = a - 2 * b + c
    shift = 0.5 * (a - c) / curvature if curvature < 0 else 0.0
    return float((peak + shift) * bin_hz)


def nearest_colour(frequency: float) -> str:
    """The colour whose note is nearest on a log-frequency (semitone) scale."""
    return min(TONE_HZ, key=lambda name: abs(np.log2(frequency / TONE_HZ[name])))


def classify_pitch(waveform, sample_rate: int) -> str | None:
    frequency = estimate_pitch(waveform, sample_rate)
    return None if frequency is None else nearest_colour(frequency)


def onset_strength(waveform, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(strength [frames], frame-centre times [frames] in seconds): the log of the whitened
    energy of the non-tonal bins over its median (see the module docstring); 0 for silence."""
    x = _as_mono(waveform)
    window = max(int(round(_ONSET_WINDOW_S * sample_rate)), 8)
    hop = max(int(round(_ONSET_HOP_S * sample_rate)), 1)
    if len(x) < window:
        x = np.pad(x, (0, window - len(x)))
    frames = np.lib.stride_tricks.sliding_window_view(x, window)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(window), axis=1)) ** 2
    times = (np.arange(len(frames)) * hop + window / 2) / sample_rate
    hz = np.fft.rfftfreq(window, 1.0 / sample_rate)
    power = power[:, (hz >= ONSET_BAND_HZ[0]) & (hz <= ONSET_BAND_HZ[1])]
    # Each bin's steady level (the tone, steady noise); bins far above the typical bin are
    # the tone's partials, whose loudness may drift: left out.
    steady = np.median(power, axis=0)
    floor = _ONSET_FLOOR * power.mean()
    if floor == 0:  # silence
        return np.zeros(len(frames)), times
    broadband = steady <= _TONAL_RATIO * (np.median(steady) + floor)
    energy = ((power[:, broadband] + floor) / (steady[broadband] + floor)).mean(axis=1)
    width = max(int(round(_ONSET_SMOOTH_S / _ONSET_HOP_S)), 1)
    kernel = np.hanning(width + 2)[1:-1]
    energy = np.convolve(energy, kernel / kernel.sum(), mode="same")
    # Clicks on silence: the median frame is empty, so compare with a tiny level instead.
    tiny = 1e-9
    return np.log((energy + tiny) / (np.median(energy) + tiny)), times


def detect_onsets(waveform, sample_rate: int) -> np.ndarray:
    """Onset times in seconds, ascending (empty when none)."""
    strength, times = onset_strength(waveform, sample_rate)  # median 0
    spread = 1.4826 * np.median(np.abs(strength))  # MAD as a sigma
    threshold = max(ONSET_THRESHOLD_MADS * spread, np.log(ONSET_MIN_RATIO))
    neighbourhood = 2 * int(round(_ONSET_SEPARATION_S / _ONSET_HOP_S)) + 1
    is_peak = (strength == ndimage.maximum_filter1d(strength, neighbourhood, mode="constant")
               ) & (strength > threshold)
    is_peak[1:] &= ~is_peak[:-1]  # a flat-topped peak: its first frame only
    duration = len(_as_mono(waveform)) / sample_rate
    is_peak &= (times >= _ONSET_EDGE_S) & (times <= duration - _ONSET_EDGE_S)
    return times[is_peak]


def onset_offsets(bounce_times: Sequence[float], onsets: Sequence[float]) -> np.ndarray:
    """For each bounce, nearest onset minus bounce time (s); inf when there are no onsets."""
    bounces = np.asarray(bounce_times, np.float64)
    onsets = np.sort(np.asarray(onsets, np.float64))
    if len(onsets) == 0:
        return np.full(len(bounces), np.inf)
    differences = onsets[None, :] - bounces[:, None]
    return differences[np.arange(len(bounces)), np.abs(differences).argmin(axis=1)]


def random_onset_offsets(bounce_times: Sequence[float], duration: float,
                         rng: np.random.Generator, draws: int) -> np.ndarray:
    """Offsets [draws * bounces] when as many onsets as bounces fall uniformly in [0, duration]."""
    bounces = np.asarray(bounce_times, np.float64)
    return np.concatenate([
        onset_offsets(bounces, rng.uniform(0.0, duration, len(bounces))) for _ in range(draws)])


def evaluate_soundtracks(waveforms: Sequence[np.ndarray], sample_rate: int,
                         colours: Sequence[str], bounce_times: Sequence[Sequence[float]], *,
                         chance_draws: int = 100, seed: int = 0) -> dict:
    """Score soundtracks against their clips' colours and bounce times (seconds).

    Returns `pitch_accuracy`, `pitch_chance` (majority-colour rate), `pitch_chance_uniform`
    (1 / colours), `median_onset_offset_ms` (median |offset| over all bounces; inf when more
    than half have no onset at all), `onset_chance_ms` (the same for random onsets),
    `mean_onset_offset_ms` (signed mean over bounces with an onset: a constant lag shows here),
    `missed_bounces` (fraction of bounces in clips without any onset), `onsets_per_bounce`
    (detected onsets / true bounces) and `median_click_offset_ms` (the other way round: each
    detected onset to its nearest bounce), which expose a soundtrack that clicks all the time
    and so lands near every bounce, `count`, `bounces` and `clips` (per clip: `pitch_hz`,
    `colour`, `target`, `onsets`, `offsets_ms`).
    """
    if not len(waveforms) == len(colours) == len(bounce_times):
        raise ValueError(f"{len(waveforms)} waveforms, {len(colours)} colours and "
                         f"{len(bounce_times)} bounce lists: expected one of each per clip")
    for colour in colours:
        if colour not in TONE_HZ:
            raise ValueError(f"unknown target colour {colour!r}")
    rng = np.random.default_rng(seed)
    clips, offsets, click_offsets, chance_offsets = [], [], [], []
    for waveform, colour, bounces in zip(waveforms, colours, bounce_times):
        pitch = estimate_pitch(waveform, sample_rate)
        onsets = detect_onsets(waveform, sample_rate)
        clip_offsets = onset_offsets(bounces, onsets)
        offsets.append(clip_offsets)
        click_offsets.append(onset_offsets(onsets, bounces))
        chance_offsets.append(random_onset_offsets(
            bounces, len(waveform) / sample_rate, rng, chance_draws))
        clips.append({"pitch_hz": pitch,
                      "colour": None if pitch is None else nearest_colour(pitch),
                      "target": colour, "onsets": [float(t) for t in onsets],
                      "offsets_ms": [float(1000 * o) for o in clip_offsets]})
    offsets = np.concatenate(offsets) if offsets else np.zeros(0)
    click_offsets = np.concatenate(click_offsets) if click_offsets else np.zeros(0)
    chance_offsets = np.concatenate(chance_offsets) if chance_offsets else np.zeros(0)
    found = np.isfinite(offsets)
    nan = float("nan")
    count = len(clips)
    majority = max(list(colours).count(c) for c in set(colours)) / count if count else nan
    return {
        "pitch_accuracy": (float(np.mean([c["colour"] == c["target"] for c in clips]))
                           if count else nan),
        "pitch_chance": majority,
        "pitch_chance_uniform": 1.0 / len(TONE_HZ),
        "median_onset_offset_ms": float(1000 * np.median(np.abs(offsets))) if len(offsets) else nan,
        "onset_chance_ms": (float(1000 * np.median(np.abs(chance_offsets)))
                            if len(chance_offsets) else nan),
        "mean_onset_offset_ms": float(1000 * offsets[found].mean()) if found.any() else nan,
        "missed_bounces": float(1 - found.mean()) if len(offsets) else nan,
        "onsets_per_bounce": len(click_offsets) / len(offsets) if len(offsets) else nan,
        "median_click_offset_ms": (float(1000 * np.median(np.abs(click_offsets)))
                                   if len(click_offsets) else nan),
        "count": count,
        "bounces": int(len(offsets)),
        "clips": clips,
    }
