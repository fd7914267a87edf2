"""DAC-VAE training losses: DAC's multi-scale mel distance, a multi-resolution STFT loss, and the
KL of the posterior to N(0, I).

Spectra follow the conventions of the `descript-audio-codec` losses (audiotools' AudioSignal.stft:
torch.stft with center=True, reflect padding, a periodic Hann window, hop = window // 4, no
normalisation), so loss values are comparable with DAC's. We frame and FFT with jax.numpy
ourselves because jax.scipy.signal.stft scales by the window sum and pads with zeros; the mel
filters are transformers' numpy `mel_filter_bank` with Slaney scale and area norm (librosa's
default, which audiotools uses).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal


@functools.lru_cache(maxsize=None)
def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (scipy.signal.get_window's default, as DAC's STFT uses)."""
    return scipy.signal.get_window("hann", length).astype(np.float32)


@functools.lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] Slaney mel filters (librosa.filters.mel's defaults)."""
    from transformers.audio_utils import mel_filter_bank  # numpy only; imported on first use
    return mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels,
                           min_frequency=fmin, max_frequency=sample_rate / 2 if fmax is None
                           else fmax, sampling_rate=sample_rate, norm="slaney",
                           mel_scale="slaney").astype(np.float32)


def _mono(audio: jax.Array) -> jax.Array:
    """[B, T, 1] or [B, T] -> [B, T] float32."""
    if audio.ndim == 3:
        if audio.shape[-1] != 1:
            raise ValueError(f"audio losses take mono audio [B, T, 1], got {audio.shape}")
        audio = audio[..., 0]
    return audio.astype(jnp.float32)


def stft_magnitude(audio: jax.Array, window_length: int, hop_length: int | None = None
                   ) -> jax.Array:
    """|STFT| of audio [B, T] or [B, T, 1] -> [B, frames, window_length // 2 + 1] with
    frames = 1 + T // hop (torch.stft(center=True) with reflect padding; needs
    T > window_length // 2, as torch does)."""
    x = _mono(audio)
    hop = window_length // 4 if hop_length is None else hop_length
    half = window_length // 2
    if x.shape[1] <= half:
        raise ValueError(f"an STFT with window {window_length} needs more than {half} samples "
                         f"(reflect padding), got {x.shape[1]}")
    x = jnp.pad(x, ((0, 0), (half, half)), mode="reflect")
    frames = 1 + (x.shape[1] - window_length) // hop
    index = hop * np.arange(frames)[:, None] + np.arange(window_length)[None, :]
    return jnp.abs(jnp.fft.rfft(x[:, index] * hann_window(window_length), axis=-1))


def mel_spectrogram(audio: jax.Array, *, sample_rate: int, window_length: int, n_mels: int,
                    hop_length: int | None = None, fmin: float = 0.0,
                    fmax: float | None = None) -> jax.Array:
    """Mel magnitudes [B, frames, n_mels] (magnitude, not power, as DAC's)."""
    magnitude = stft_magnitude(audio, window_length, hop_length)
    return magnitude @ mel_filterbank(sample_rate, window_length, n_mels, fmin, fmax)


def _log_and_linear_l1(a: jax.Array, b: jax.Array, *, clamp_eps: float, power: float,
                       log_weight: float, mag_weight: float) -> jax.Array:
    log = lambda m: jnp.log10(jnp.power(jnp.maximum(m, clamp_eps), power))
    loss = log_weight * jnp.mean(jnp.abs(log(a) - log(b)))
    if mag_weight:
        loss = loss + mag_weight * jnp.mean(jnp.abs(a - b))
    return loss


def multiscale_mel_distance(estimate: jax.Array, target: jax.Array, *, sample_rate: int,
                            window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
                            n_mels=(5, 10, 20, 40, 80, 160, 320), clamp_eps: float = 1e-5,
                            power: float = 1.0, log_weight: float = 1.0,
                            mag_weight: float = 0.0) -> jax.Array:
    """DAC's mel loss: over every (window, n_mels) scale, the mean L1 distance of
    log10(max(mel, eps)^power) (plus mag_weight times the L1 of the mel magnitudes), summed.
    Defaults are DAC's training configuration; audio [B, T, 1] or [B, T]."""
    if len(window_lengths) != len(n_mels):
        raise ValueError(f"one n_mels per window: {window_lengths} vs {n_mels}")
    total = jnp.zeros((), jnp.float32)
    for window, mels in zip(window_lengths, n_mels):
        spec = functools.partial(mel_spectrogram, sample_rate=sample_rate, window_length=window,
                                 n_mels=mels)
        total = total + _log_and_linear_l1(spec(estimate), spec(target), clamp_eps=clamp_eps,
                                           power=power, log_weight=log_weight,
                                           mag_weight=mag_weight)
    return total


def multiresolution_stft_loss(estimate: jax.Array, target: jax.Array, *,
                              window_lengths=(2048, 512), clamp_eps: float = 1e-5,
                              power: float = 2.0, log_weight: float = 1.0,
                              mag_weight: float = 1.0) -> jax.Array:
    """DAC's MultiScaleSTFTLoss: per window (hop window // 4), L1 of log10 of the clamped
    magnitude^power plus mag_weight times L1 of the magnitudes, summed over windows."""
    total = jnp.zeros((), jnp.float32)
    for window in window_lengths:
        total = total + _log_and_linear_l1(
            stft_magnitude(estimate, window), stft_magnitude(target, window),
            clamp_eps=clamp_eps, power=power, log_weight=log_weight, mag_weight=mag_weight)
    return total


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, I)) for latents [B, t, C]: summed over channels, averaged
    over batch and time, so its scale does not depend on the clip length (the TAE's KL sums over
    every latent element instead)."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.mean(jnp.sum(kl.astype(jnp.float32), axis=-1))


def dac_vae_loss(cfg, audio: jax.Array, recon: jax.Array, mean: jax.Array, logvar: jax.Array
                 ) -> tuple[jax.Array, dict]:
    """The weighted DAC-VAE objective of a dac_vae config (configs/dac_vae.py) for a batch and
    its reconstruction through a posterior sample: (loss, metrics), all float32 scalars."""
    metrics = {
        "mel": multiscale_mel_distance(recon, audio, sample_rate=cfg.sample_rate,
                                       **dict(cfg.mel_loss)),
        "waveform_l1": jnp.mean(jnp.abs(_mono(recon) - _mono(audio))),
        "kl": kl_to_standard_normal(mean, logvar),
    }
    loss = (cfg.mel_weight * metrics["mel"] + cfg.waveform_l1_weight * metrics["waveform_l1"]
            + cfg.kl_weight * metrics["kl"])
    if cfg.stft_weight:
        metrics["stft"] = multiresolution_stft_loss(recon, audio, **dict(cfg.stft_loss))
        loss = loss + cfg.stft_weight * metrics["stft"]
    return loss, metrics
