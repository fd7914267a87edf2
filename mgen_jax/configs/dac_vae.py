"""DAC-VAE sub-configs: the Descript Audio Codec's convolutional encoder/decoder with its residual
vector quantiser replaced by a VAE bottleneck (Movie Gen Audio's audio autoencoder).

The architecture keys keep DAC's constructor names (`encoder_dim`, `encoder_rates`,
`decoder_dim`, `decoder_rates`), so a DAC checkpoint's metadata maps onto them one to one
(checkpointing/dac_convert.py); DAC's `latent_dim` (the width of the features it quantises) is
our `feature_dim`, and `latent_channels` is the VAE latent the audio DiT models.
"""
import math

import ml_collections

from mgen_jax.configs.registries import DAC_VAE_PRESETS

# DAC's multi-scale mel loss (its conf/base.yml): seven window lengths 32..2048 with hop
# window // 4, 5..320 mel bands, L1 on log10 of the clamped mel magnitude (no linear term).
DEFAULT_MEL_LOSS = dict(window_lengths=(32, 64, 128, 256, 512, 1024, 2048),
                        n_mels=(5, 10, 20, 40, 80, 160, 320), clamp_eps=1e-5, power=1.0,
                        log_weight=1.0, mag_weight=0.0)
# Multi-resolution STFT loss (DAC's MultiScaleSTFTLoss defaults: log of the squared magnitude
# and the magnitude itself, windows 2048 and 512).
DEFAULT_STFT_LOSS = dict(window_lengths=(2048, 512), clamp_eps=1e-5, power=2.0,
                         log_weight=1.0, mag_weight=1.0)


def dac_vae_config(size: str = "tiny") -> ml_collections.ConfigDict:
    cfg = dict(DAC_VAE_PRESETS.load(size))  # sizes: configs/registries.py
    cfg.update(
        size=size,  # `--config.dac_vae.size=paper` switches the whole preset
        # Loss weights: DAC trains with mel 15, waveform L1 1 (plus GAN terms); the VAE adds KL.
        mel_weight=15.0,
        stft_weight=0.0,
        waveform_l1_weight=1.0,
        kl_weight=1e-4,
        mel_loss=ml_collections.ConfigDict(DEFAULT_MEL_LOSS),
        stft_loss=ml_collections.ConfigDict(DEFAULT_STFT_LOSS),
        # Training excerpts: one random window of this many seconds per clip and step (DAC
        # trains on 0.38 s); 0: whole clips (training/dac_vae_phase.py).
        train_window_s=0.0,
        # What the decoder reconstructs from while training: "posterior" (a reparameterised
        # sample, the VAE's objective) or "mean" (the posterior mean; the KL term then only keeps
        # the means near the prior's scale). A small DAC-VAE trained from scratch on samples
        # whose log-variance starts at 0 collapsed to silence in CPU budgets (measured on the
        # audio-visual quickstart), so the quickstart trains on the mean, as its audio DiT
        # encodes with it (flow.latent_sample="mean").
        train_latent="posterior",
        # Latents are normalised as (z - shift) * scale before the audio DiT sees them; both
        # are measured on the training data once the VAE is trained.
        latent_shift=0.0,
        latent_scale=1.0,
    )
    cfg = ml_collections.ConfigDict(cfg)
    validate_dac_vae(cfg)
    return cfg


def hop_length(cfg) -> int:
    """Waveform samples per latent frame."""
    return math.prod(cfg.encoder_rates)


def latent_rate(cfg) -> float:
    """Latent frames per second of audio."""
    return cfg.sample_rate / hop_length(cfg)


def validate_dac_vae(cfg) -> None:
    """Impossible shapes fail here, before JAX runs, naming the key."""
    def bad(key, why):
        return ValueError(f"dac_vae.{key}={cfg.get(key)!r}: {why}")

    for key in ("encoder_rates", "decoder_rates"):
        rates = tuple(cfg[key])
        if not rates or any(int(r) < 1 for r in rates):
            raise bad(key, "need at least one stride, each >= 1")
    if math.prod(cfg.encoder_rates) != math.prod(cfg.decoder_rates):
        raise bad("decoder_rates", f"their product must equal the encoder's hop "
                                   f"{math.prod(cfg.encoder_rates)}")
    if cfg.decoder_dim % 2 ** len(cfg.decoder_rates):
        raise bad("decoder_dim", f"each of the {len(cfg.decoder_rates)} decoder blocks halves the "
                                 f"width, so it must be divisible by {2 ** len(cfg.decoder_rates)}")
    for key in ("encoder_dim", "feature_dim", "latent_channels", "sample_rate"):
        if int(cfg[key]) < 1:
            raise bad(key, "must be positive")
    if cfg.get("train_latent", "posterior") not in ("posterior", "mean"):
        raise bad("train_latent", "must be 'posterior' or 'mean'")
    mel = cfg.get("mel_loss")
    if mel is not None and len(mel.window_lengths) != len(mel.n_mels):
        raise bad("mel_loss", "window_lengths and n_mels need one entry per scale")
