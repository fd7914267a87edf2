"""Build each model of an experiment, abstractly, from its config (as PureModels)."""
import functools

import jax.numpy as jnp

from mgen_jax.models.audio.audio_dit import AudioDiffusionTransformer
from mgen_jax.models.audio.dac_vae import DacVAE
from mgen_jax.models.dit.transformer import DiffusionTransformer
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder
from mgen_jax.configs.text import text_shapes
from mgen_jax.models.text.encoder_set import TextEncoders
from mgen_jax.models.vision.clip_vision import CLIPVisionTransformer, video_feature_dim

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_tae(cfg) -> PureModel:
    return PureModel.create(functools.partial(_tae, cfg.tae))


def build_tae_trainable(cfg) -> PureModel:
    """What the TAE phase trains: the autoencoder, paired with its discriminator when the GAN
    loss is on (cfg.tae.disc_weight > 0)."""
    if cfg.tae.disc_weight > 0:
        from mgen_jax.models.tae.gan_pair import build_tae_with_discriminator
        return build_tae_with_discriminator(cfg.tae)
    return build_tae(cfg)


def autoencoder_params(cfg, trained_params: dict) -> dict:
    """The autoencoder's params out of the TAE phase's (pair's) params."""
    return trained_params["autoencoder"] if cfg.tae.disc_weight > 0 else trained_params


def build_text_encoders(cfg) -> PureModel:
    """The frozen encoders of cfg.text.encoders, one module (models/text/encoder_set.py)."""
    return PureModel.create(functools.partial(_text_encoders, cfg.text))


def text_dims(cfg) -> tuple[tuple[str, int], ...]:
    """((encoder name, output dim), ...) in the conditioner's concatenation order."""
    return tuple((name, dim) for name, (_, dim) in text_shapes(cfg.text).items())


def build_dit(cfg) -> PureModel:
    return PureModel.create(functools.partial(
        _dit, cfg.dit, cfg.tae.z_channels, text_dims(cfg), DTYPES[cfg.compute_dtype]))


def build_dac_vae(cfg) -> PureModel:
    """Movie Gen Audio's audio autoencoder (cfg.dac_vae)."""
    return PureModel.create(functools.partial(_dac_vae, cfg.dac_vae))


def build_clip_vision(cfg) -> PureModel:
    """The frozen CLIP vision tower whose per-frame embeddings condition the audio DiT."""
    return PureModel.create(functools.partial(_clip_vision, cfg.vision))


def build_audio_dit(cfg) -> PureModel:
    """The audio DiT over cfg.dac_vae's latents, conditioned on cfg.vision's per-frame
    features (vision.features) and cfg.text's encoders."""
    return PureModel.create(functools.partial(
        _audio_dit, cfg.audio_dit, cfg.dac_vae.latent_channels, video_feature_dim(cfg.vision),
        text_dims(cfg), DTYPES[cfg.compute_dtype]))


def _tae(tae_cfg, rngs):
    return TemporalAutoencoder(tae_cfg, rngs=rngs)


def _text_encoders(text_cfg, rngs):
    return TextEncoders(text_cfg, rngs=rngs)


def _dit(dit_cfg, latent_channels, dims, dtype, rngs):
    return DiffusionTransformer(dit_cfg, latent_channels=latent_channels, text_dims=dims,
                                dtype=dtype, rngs=rngs)


def _dac_vae(dac_cfg, rngs):
    return DacVAE(dac_cfg, rngs=rngs)


def _clip_vision(vision_cfg, rngs):
    return CLIPVisionTransformer(vision_cfg, rngs=rngs)


def _audio_dit(audio_cfg, latent_channels, video_dim, dims, dtype, rngs):
    return AudioDiffusionTransformer(audio_cfg, latent_channels=latent_channels,
                                     video_dim=video_dim, text_dims=dims, dtype=dtype, rngs=rngs)
