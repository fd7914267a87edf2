"""How audible are the joins of multi-diffusion's windows? The energy discontinuity of a generated
waveform at the window boundaries against inside the windows.

The waveform's short-time level (RMS over `FRAME_S` frames, in dB) is differenced frame to frame;
a window boundary (where a window starts or ends: flow/multi_diffusion.py window_starts) marks the
frame differences within one frame of it as "join", those farther than two frames from every
boundary as "within". Differences near a true bounce (its click is a real level jump) count as
neither. The report is the mean absolute level step at joins, within, and their ratio: ~1 when
the joins are inaudible in level, larger when each window's audio drifts apart from its
neighbour's (uniform weights switch abruptly at a window edge; triangular ones fade)."""
from collections.abc import Sequence

import numpy as np

from mgen_jax.flow.multi_diffusion import window_starts

FRAME_S = 0.01
_FLOOR_DB = -80.0
_CLICK_GUARD_S = 0.05


def window_boundaries_s(latent_frames: int, window: int, stride: int, hop_s: float) -> np.ndarray:
    """Times (s) where a multi-diffusion window starts or ends inside the audio."""
    starts = window_starts(latent_frames, window, stride)
    edges = np.concatenate([starts[1:], starts[:-1] + window])
    edges = edges[(edges > 0) & (edges < latent_frames)]
    return np.unique(edges) * hop_s


def level_steps(waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(|dB step| between consecutive frames [F - 1], the time of each step's boundary [F - 1])."""
    n = int(round(FRAME_S * sample_rate))
    frames = len(waveform) // n
    rms = np.sqrt(np.mean(np.square(waveform[:frames * n].reshape(frames, n)), axis=1))
    db = np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), _FLOOR_DB)
    return np.abs(np.diff(db)), np.arange(1, frames) * FRAME_S


def join_discontinuity(waveforms: Sequence[np.ndarray], sample_rate: int,
                       boundaries_s: np.ndarray, bounce_times: Sequence[Sequence[float]]) -> dict:
    """Mean |level step| (dB per FRAME_S) at window joins and within windows over all clips."""
    at_join, within = [], []
    boundaries_s = np.asarray(boundaries_s, np.float64)
    for waveform, bounces in zip(waveforms, bounce_times):
        steps, times = level_steps(np.asarray(waveform, np.float64), sample_rate)
        near_click = np.zeros(len(times), bool)
        for b in bounces:
            near_click |= np.abs(times - b) < _CLICK_GUARD_S
        distance = (np.min(np.abs(times[:, None] - boundaries_s[None]), axis=1)
                    if len(boundaries_s) else np.full(len(times), np.inf))
        at_join.append(steps[(distance <= FRAME_S) & ~near_click])
        within.append(steps[(distance > 2 * FRAME_S) & ~near_click])
    at_join, within = np.concatenate(at_join), np.concatenate(within)
    join_db = float(at_join.mean()) if len(at_join) else float("nan")
    within_db = float(within.mean()) if len(within) else float("nan")
    return {"join_step_db": join_db, "within_step_db": within_db,
            "ratio": join_db / within_db if within_db > 0 else float("nan"),
            "join_steps": int(len(at_join)), "within_steps": int(len(within))}
