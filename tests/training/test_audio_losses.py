"""DAC-VAE losses against torch references (torch.stft, torch.distributions), and their behaviour:
zero for identical signals, growing with distortion, the weighted total of a dac_vae config."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
import torch

from mgen_jax.configs.dac_vae import dac_vae_config
from mgen_jax.training.audio_losses import (dac_vae_loss, kl_to_standard_normal, mel_filterbank,
                                            multiresolution_stft_loss, multiscale_mel_distance,
                                            stft_magnitude)

SR = 16000


def _signals(samples=2503, seed=0):
    """A batch of 2 tone mixtures with a little noise, [B, T, 1]."""
    rng = np.random.RandomState(seed)
    t = np.arange(samples) / SR
    x = sum(rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * rng.uniform(80, 6000, (2, 1)) * t)
            for _ in range(3)) + 0.01 * rng.randn(2, samples)
    return x[..., None].astype(np.float32)


def _torch_magnitude(x, window):
    """DAC's STFT (audiotools AudioSignal.stft, match_stride=False): torch.stft, center=True,
    reflect padding, scipy's periodic Hann window, hop window // 4 -> [B, frames, bins]."""
    return torch.stft(torch.from_numpy(x[..., 0]), n_fft=window, hop_length=window // 4,
                      window=torch.from_numpy(scipy.signal.get_window("hann", window)).float(),
                      center=True, pad_mode="reflect", return_complex=True
                      ).abs().transpose(1, 2)


def _torch_log_l1(a, b, clamp_eps, power, log_weight, mag_weight):
    log = lambda m: m.clamp(clamp_eps).pow(power).log10()
    return (log_weight * torch.nn.functional.l1_loss(log(a), log(b))
            + mag_weight * torch.nn.functional.l1_loss(a, b))


@pytest.mark.parametrize("window", [32, 255, 2048])
def test_stft_magnitude_matches_torch_stft(window):
    x = _signals()
    ours = np.asarray(jax.jit(stft_magnitude, static_argnums=1)(x, window))
    reference = _torch_magnitude(x, window).numpy()
    assert ours.shape == reference.shape == (2, 1 + 2503 // (window // 4), window // 2 + 1)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.max())


def test_mel_and_stft_losses_match_a_torch_computation():
    x, y = _signals(seed=0), _signals(seed=1)
    windows, mels = (64, 512, 2048), (10, 40, 160)
    terms = dict(clamp_eps=1e-5, power=1.0, log_weight=1.0, mag_weight=0.5)
    mel = jax.jit(functools.partial(multiscale_mel_distance, sample_rate=SR,
                                    window_lengths=windows, n_mels=mels, **terms))
    reference = 0.0
    for window, n_mels in zip(windows, mels):
        basis = torch.from_numpy(mel_filterbank(SR, window, n_mels))
        spec = lambda s: _torch_magnitude(s, window) @ basis
        reference += float(_torch_log_l1(spec(x), spec(y), **terms))
    np.testing.assert_allclose(float(mel(x, y)), reference, rtol=1e-4)

    stft_terms = dict(clamp_eps=1e-5, power=2.0, log_weight=1.0, mag_weight=1.0)
    stft = jax.jit(functools.partial(multiresolution_stft_loss, window_lengths=(2048, 512),
                                     **stft_terms))
    reference = sum(float(_torch_log_l1(_torch_magnitude(x, w), _torch_magnitude(y, w),
                                        **stft_terms)) for w in (2048, 512))
    np.testing.assert_allclose(float(stft(x, y)), reference, rtol=1e-4)


def test_mel_filters_are_slaney_area_normalised_triangles():
    basis = mel_filterbank(SR, 2048, 40)
    assert basis.shape == (1025, 40) and basis.min() >= 0.0
    peaks = basis.argmax(axis=0)
    assert np.all(np.diff(peaks) > 0)  # ascending centres
    # Slaney norm: each triangle has unit area in Hz (bins are SR / 2048 Hz apart).
    np.testing.assert_allclose(basis.sum(axis=0) * SR / 2048, 1.0, rtol=0.05)


def test_losses_are_zero_for_identical_signals_and_grow_with_distortion():
    x = _signals()
    noise = np.random.RandomState(5).randn(*x.shape).astype(np.float32)
    mel = jax.jit(functools.partial(multiscale_mel_distance, sample_rate=SR))  # DAC's 7 scales
    stft = jax.jit(multiresolution_stft_loss)
    for loss in (mel, stft):
        values = [float(loss(x + level * noise, x)) for level in (0.003, 0.03, 0.3)]
        assert 1e-3 < values[0] < values[1] < values[2], values
        # Zero up to rounding: XLA may fuse the two identical spectra differently.
        assert float(loss(x, x)) < 1e-6
    # Symmetric in its two arguments.
    assert float(mel(x, x + 0.03 * noise)) == pytest.approx(float(mel(x + 0.03 * noise, x)))


def test_kl_matches_torch_distributions():
    rng = np.random.RandomState(0)
    mean = rng.randn(3, 7, 5).astype(np.float32)
    logvar = rng.uniform(-2, 1, (3, 7, 5)).astype(np.float32)
    posterior = torch.distributions.Normal(torch.from_numpy(mean),
                                           torch.from_numpy(np.exp(0.5 * logvar)))
    prior = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    reference = torch.distributions.kl_divergence(posterior, prior).sum(-1).mean()
    np.testing.assert_allclose(float(kl_to_standard_normal(mean, logvar)), float(reference),
                               rtol=1e-5)
    assert float(kl_to_standard_normal(np.zeros_like(mean), np.zeros_like(logvar))) == 0.0
    # Per latent frame: the same posterior over a clip twice as long gives the same KL.
    np.testing.assert_allclose(
        float(kl_to_standard_normal(np.concatenate([mean, mean], 1),
                                    np.concatenate([logvar, logvar], 1))),
        float(reference), rtol=1e-5)


def test_dac_vae_loss_is_the_weighted_sum_of_its_terms():
    cfg = dac_vae_config("tiny")
    cfg.stft_weight = 0.5
    x, y = _signals(seed=0), _signals(seed=1)
    mean = jnp.full((2, 4, cfg.latent_channels), 0.3)
    logvar = jnp.full((2, 4, cfg.latent_channels), -0.5)
    loss, metrics = jax.jit(lambda *a: dac_vae_loss(cfg, *a))(x, y, mean, logvar)
    assert set(metrics) == {"mel", "waveform_l1", "kl", "stft"}
    expected = (cfg.mel_weight * metrics["mel"] + cfg.waveform_l1_weight * metrics["waveform_l1"]
                + cfg.kl_weight * metrics["kl"] + cfg.stft_weight * metrics["stft"])
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-6)
    assert float(metrics["waveform_l1"]) == pytest.approx(float(np.mean(np.abs(x - y))),
                                                          rel=1e-6)
    assert all(float(v) > 0 for v in metrics.values())
