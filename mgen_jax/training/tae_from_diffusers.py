"""The TAE phase's first parameters from an image autoencoder, as Movie Gen initialises its TAE:
`tae.init_from_diffusers=FOLDER` (a diffusers AutoencoderKL folder: config.json + weights) gives
the spatial layers the image model's weights and the temporal layers their identity init
(checkpointing/tae_diffusers_convert.py); the discriminator, when the GAN is on, starts fresh.
The experiment's tae architecture must be the folder's (the error names the key that differs)."""
import jax
from flax import nnx

from mgen_jax.checkpointing.tae_diffusers_convert import (init_tae_from_diffusers,
                                                          load_diffusers_config,
                                                          tae_config_from_diffusers)

# What the folder's config.json decides; everything else (losses, temporal levels) is ours.
ARCHITECTURE_KEYS = ("ch", "ch_mult", "num_res_blocks", "z_channels", "norm_groups", "attention",
                     "pixel_patch")


def check_architecture(tae_cfg, folder: str) -> None:
    mapped = tae_config_from_diffusers(load_diffusers_config(folder), tae_cfg)
    def value(v):
        return tuple(v) if isinstance(v, (list, tuple)) else v

    for key in ARCHITECTURE_KEYS:
        ours, theirs = value(tae_cfg[key]), value(mapped[key])
        if ours != theirs:
            raise ValueError(f"tae.init_from_diffusers: {folder} holds a VAE with {key}={theirs}, "
                             f"but this experiment's tae.{key} is {ours}; set tae.{key} to match")


def autoencoder_params_from_diffusers(cfg) -> dict:
    """The autoencoder's params (pure dict, host arrays) from cfg.tae.init_from_diffusers."""
    folder = cfg.tae.init_from_diffusers
    check_architecture(cfg.tae, folder)
    model = init_tae_from_diffusers(folder, cfg.tae, temporal=True, seed=cfg.seed)
    return jax.device_get(nnx.to_pure_dict(nnx.state(model)))
