"""Build each model of an experiment, abstractly, from its config (as PureModels)."""
import functools

import jax.numpy as jnp

from mgen_jax.models.dit.transformer import DiffusionTransformer
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder
from mgen_jax.models.text.t5_encoder import T5Encoder

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


def build_text_encoder(cfg) -> PureModel:
    return PureModel.create(functools.partial(_t5, cfg.text))


def build_dit(cfg) -> PureModel:
    return PureModel.create(functools.partial(
        _dit, cfg.dit, cfg.tae.z_channels, cfg.text.d_model, DTYPES[cfg.compute_dtype]))


def _tae(tae_cfg, rngs):
    return TemporalAutoencoder(tae_cfg, rngs=rngs)


def _t5(text_cfg, rngs):
    return T5Encoder(text_cfg, rngs=rngs)


def _dit(dit_cfg, latent_channels, text_dim, dtype, rngs):
    return DiffusionTransformer(dit_cfg, latent_channels=latent_channels, text_dim=text_dim,
                                dtype=dtype, rngs=rngs)
