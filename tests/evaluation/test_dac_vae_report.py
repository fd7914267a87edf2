"""The DAC-VAE reconstruction report: the waveform SNR of an exact copy is infinite and that of
a copy with noise added at a chosen SNR is that SNR; a perfect reconstruction scores as its
ground truth on av_sync with zero mel distance; the report of a (fresh, tiny) autoencoder on
held-out clips of the experiment's size has its keys and one reconstruction per clip."""
import jax
import numpy as np
import pytest

from mgen_jax.configs.schema import default_experiment
from mgen_jax.evaluation.dac_vae_report import (held_out_soundtracks, reconstruct,
                                                reconstruction_scores, waveform_snr_db)
from mgen_jax.models.builders import build_dac_vae


def _cfg():
    """Held-out clips of 0.5 s at 4 kHz and a shrunk autoencoder (hop 10, odd widths)."""
    cfg = default_experiment()
    cfg.data.update(frames=8, height=16, width=17, fps=16, audio_sample_rate=4000)
    cfg.dac_vae.update(sample_rate=4000, encoder_dim=2, encoder_rates=(2, 5), feature_dim=7,
                       latent_channels=3, decoder_dim=12, decoder_rates=(5, 2))
    cfg.dac_vae.mel_loss.update(window_lengths=(32, 64, 128), n_mels=(5, 10, 20))
    return cfg


def test_snr_of_a_copy_is_infinite_and_of_added_noise_is_its_snr():
    rng = np.random.default_rng(0)
    target = 0.3 * np.sin(2 * np.pi * 440 * np.arange(3001) / 16000) + 0.01 * rng.normal(size=3001)
    assert waveform_snr_db(target, target) == np.inf
    noise = rng.normal(size=target.shape)
    for snr in (-3.0, 10.0, 27.5):
        scale = np.sqrt(np.sum(target ** 2) / np.sum(noise ** 2) / 10 ** (snr / 10))
        assert waveform_snr_db(target + scale * noise, target) == pytest.approx(snr, abs=1e-6)
    # Half the amplitude: the error is half the signal, 20 log10(2) dB.
    assert waveform_snr_db(0.5 * target, target) == pytest.approx(20 * np.log10(2), abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        waveform_snr_db(target[:-1], target)


def test_a_perfect_reconstruction_scores_as_the_ground_truth():
    cfg = _cfg()
    clips = held_out_soundtracks(cfg, samples_per_combo=1)
    assert len(clips["waveforms"]) == 12 and all(len(w) == 2000 for w in clips["waveforms"])
    copies = [w.copy() for w in clips["waveforms"]]
    report = reconstruction_scores(cfg, copies, clips["waveforms"], clips["colours"],
                                   clips["bounce_times"])
    assert report["snr_db"] == np.inf and report["mel_distance"] == pytest.approx(0.0, abs=1e-5)
    assert report["reconstruction"] == report["ground_truth"]
    assert report["ground_truth"]["pitch_accuracy"] == 1.0
    # Silence instead: no pitch, no onsets, a large mel distance.
    silent = reconstruction_scores(cfg, [0 * w for w in copies], clips["waveforms"],
                                   clips["colours"], clips["bounce_times"])
    assert silent["snr_db"] == pytest.approx(0.0, abs=1e-9) and silent["mel_distance"] > 1.0
    assert silent["reconstruction"]["pitch_accuracy"] == 0.0
    assert silent["reconstruction"]["median_onset_offset_ms"] == np.inf


def test_report_of_a_fresh_autoencoder_on_held_out_clips():
    cfg = _cfg()
    params = build_dac_vae(cfg).init(jax.random.key(0))
    clips = held_out_soundtracks(cfg, samples_per_combo=1, seed=7)
    # One clip shorter than the rest: reconstructed on its own, to its own length (the odd
    # decoder stride ends a sample short: padded back).
    waveforms = clips["waveforms"][:5] + [clips["waveforms"][5][:1501]]
    recon = reconstruct(cfg, params, waveforms)
    assert [len(r) for r in recon] == [len(w) for w in waveforms]
    assert all(np.all(np.isfinite(r)) for r in recon) and np.std(recon[0]) > 0
    report = reconstruction_scores(cfg, recon, waveforms, colours=clips["colours"][:6],
                                   bounce_times=clips["bounce_times"][:6])
    assert {"clips", "sample_rate", "snr_db", "snr_db_min", "mel_distance", "reconstruction",
            "ground_truth", "onset_chance_ms", "pitch_chance"} <= set(report)
    assert report["clips"] == 6 and np.isfinite(report["snr_db"])
    assert report["snr_db_min"] <= report["snr_db"] and report["mel_distance"] > 0
    assert {"pitch_accuracy", "median_onset_offset_ms"} <= set(report["reconstruction"])
    # Without the clips' labels: the waveform measures only.
    plain = reconstruction_scores(cfg, recon, waveforms)
    assert "reconstruction" not in plain and plain["snr_db"] == report["snr_db"]
