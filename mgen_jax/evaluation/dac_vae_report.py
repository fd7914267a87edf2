"""DAC-VAE held-out reconstruction: does the audio autoencoder keep what the audio DiT must
produce through it?

Held-out soundtracks (audio-visual Shapes clips of the held-out colour/shape/direction
combinations, data_pipelines/shapes_av.py, never trained on) go through the posterior mean
(encode -> mean -> decode, no sampling noise) and are scored on
* the waveform: SNR in dB, 10 log10(sum x^2 / sum (x - y)^2) per clip, averaged over clips;
  inf for an exact copy (a phase-blind decoder scores near or below 0 dB however good it sounds);
* the spectrum: DAC's multi-scale mel distance (training/audio_losses.py, the settings of
  cfg.dac_vae.mel_loss; 0 for an exact copy), averaged over clips;
* what the soundtrack encodes (evaluation/av_sync.py): pitch accuracy (the tone names the
  colour) and the median offset of the detected clicks from the true bounces, for the
  reconstructions and, as the ceiling they are read against, for the ground truth.
"""
from __future__ import annotations

import functools

import jax
import numpy as np

from data_pipelines.shapes_av import held_out_av_clips
from mgen_jax.evaluation.av_sync import evaluate_soundtracks
from mgen_jax.models.builders import build_dac_vae
from mgen_jax.training.audio_losses import multiscale_mel_distance

# av_sync's numbers the report keeps (its per-clip details stay out of the JSON).
_SYNC_KEYS = ("pitch_accuracy", "median_onset_offset_ms", "mean_onset_offset_ms",
              "missed_bounces", "onsets_per_bounce", "median_click_offset_ms")


def waveform_snr_db(estimate: np.ndarray, target: np.ndarray) -> float:
    """SNR (dB) of one reconstruction [N] against its target [N]; inf when they are equal."""
    estimate, target = np.asarray(estimate, np.float64), np.asarray(target, np.float64)
    if estimate.shape != target.shape:
        raise ValueError(f"reconstruction shape {estimate.shape} != target shape {target.shape}")
    noise = np.sum(np.square(target - estimate))
    if noise == 0:
        return float("inf")
    return float(10.0 * np.log10(np.sum(np.square(target)) / noise))


def held_out_soundtracks(cfg, samples_per_combo: int, seed: int | None = None) -> dict:
    """The evaluation set at the experiment's size (cfg.data frames, height, width, fps and
    audio_sample_rate): `samples_per_combo` clips of each held-out combination, drawn with
    `seed` (default cfg.eval.seed + 3000, apart from the TAE's held-out clips).
    Returns {"waveforms": [float32 [N]], "colours": [str], "bounce_times": [float64 [b]]}."""
    d = cfg.data
    seed = int(cfg.eval.seed) + 3000 if seed is None else seed
    clips = held_out_av_clips(samples_per_combo, frames=d.frames, height=d.height,
                              width=d.width, fps=d.fps, sample_rate=d.audio_sample_rate,
                              seed=seed)
    return {"waveforms": [clip.audio for _, clip in clips],
            "colours": [combo[0] for combo, _ in clips],
            "bounce_times": [clip.bounce_times for _, clip in clips]}


def reconstruct(cfg, params, waveforms: list[np.ndarray], batch_size: int = 8
                ) -> list[np.ndarray]:
    """Each waveform [N] through the posterior mean of cfg.dac_vae's autoencoder on `params`:
    float32 [N] each (zero-padded where a decoder with odd strides ends short). Clips of equal
    length run in batches of batch_size."""
    model = build_dac_vae(cfg)

    @jax.jit
    def run(params, audio):  # [B, N] -> [B, N]
        vae = model.bind(params)
        mean, _ = vae.encode(audio[..., None])
        return vae.decode(mean, audio.shape[1])[..., 0]

    out: list[np.ndarray | None] = [None] * len(waveforms)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(waveforms):
        if np.ndim(w) != 1:
            raise ValueError(f"waveform {i}: expected mono [samples], got shape {np.shape(w)}")
        by_length.setdefault(len(w), []).append(i)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            audio = np.stack([np.asarray(waveforms[i], np.float32) for i in chunk])
            for i, y in zip(chunk, np.asarray(run(params, audio))):
                # A decoder with an odd stride ends a few samples short (as DAC's): silence.
                out[i] = np.pad(y, (0, audio.shape[1] - len(y)))
    return out


def reconstruction_scores(cfg, reconstructions: list[np.ndarray], waveforms: list[np.ndarray],
                          colours: list[str] | None = None,
                          bounce_times: list[np.ndarray] | None = None) -> dict:
    """Scores of reconstructions against their targets (the module docstring's measures);
    the av_sync ones only when the clips' colours and bounce times are given."""
    if len(reconstructions) != len(waveforms) or not waveforms:
        raise ValueError(f"{len(reconstructions)} reconstructions for {len(waveforms)} waveforms;"
                         " need one per waveform, at least one")
    rate = int(cfg.dac_vae.sample_rate)
    snrs = [waveform_snr_db(y, x) for y, x in zip(reconstructions, waveforms)]
    mel_distance = jax.jit(functools.partial(multiscale_mel_distance, sample_rate=rate,
                                             **dict(cfg.dac_vae.mel_loss)))
    mel = [float(mel_distance(np.asarray(y, np.float32)[None], np.asarray(x, np.float32)[None]))
           for y, x in zip(reconstructions, waveforms)]
    report = {"clips": len(waveforms), "sample_rate": rate,
              "snr_db": float(np.mean(snrs)), "snr_db_min": float(np.min(snrs)),
              "mel_distance": float(np.mean(mel))}
    if colours is not None and bounce_times is not None:
        for name, audio in (("reconstruction", reconstructions), ("ground_truth", waveforms)):
            sync = evaluate_soundtracks([np.asarray(a) for a in audio], rate, colours,
                                        bounce_times)
            report[name] = {k: sync[k] for k in _SYNC_KEYS}
        report["onset_chance_ms"] = sync["onset_chance_ms"]
        report["pitch_chance"] = sync["pitch_chance"]
    return report


def dac_vae_reconstruction_report(cfg, params, waveforms: list[np.ndarray], *,
                                  colours: list[str] | None = None,
                                  bounce_times: list[np.ndarray] | None = None) -> dict:
    """Reconstruct `waveforms` (mono [N] each, at cfg.dac_vae.sample_rate) through the
    posterior mean and score them: {"clips", "sample_rate", "snr_db" (mean over clips),
    "snr_db_min", "mel_distance" (mean)} and, with the clips' colours and bounce times (s),
    {"reconstruction": {pitch_accuracy, median_onset_offset_ms, ...}, "ground_truth": {same},
    "onset_chance_ms", "pitch_chance"}."""
    return reconstruction_scores(cfg, reconstruct(cfg, params, waveforms), waveforms, colours,
                                 bounce_times)


def held_out_dac_vae_report(cfg, params, samples_per_combo: int = 4,
                            seed: int | None = None) -> dict:
    """dac_vae_reconstruction_report on held_out_soundtracks(cfg, samples_per_combo, seed)."""
    clips = held_out_soundtracks(cfg, samples_per_combo, seed)
    return dac_vae_reconstruction_report(cfg, params, clips["waveforms"],
                                         colours=clips["colours"],
                                         bounce_times=clips["bounce_times"])
