"""The TAE paired with its patch-GAN discriminator in one module, so one TrainState (one params
pytree {'autoencoder', 'discriminator'}, one optimizer) checkpoints and shards as any other model.
The step that trains the pair is training/tae_gan_step.py."""
import functools

from flax import nnx

from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder
from mgen_jax.models.tae.discriminator import NLayerDiscriminator


class AutoencoderWithDiscriminator(nnx.Module):
    def __init__(self, autoencoder: TemporalAutoencoder, discriminator: NLayerDiscriminator):
        self.autoencoder = autoencoder
        self.discriminator = discriminator


def _pair(tae_cfg, rngs):
    return AutoencoderWithDiscriminator(
        TemporalAutoencoder(tae_cfg, rngs=rngs),
        NLayerDiscriminator(ndf=tae_cfg.disc_ndf, n_layers=tae_cfg.disc_layers, rngs=rngs))


def build_tae_with_discriminator(tae_cfg) -> PureModel:
    """The GAN phase's model; its params['autoencoder'] is a plain TAE's params."""
    return PureModel.create(functools.partial(_pair, tae_cfg))


def last_decoder_layer(ae_params: dict) -> tuple[str, ...]:
    """Path of the decoder's last conv kernel (taming's `last_layer`): the temporal conv of
    conv_out in a video TAE, its spatial conv in an image TAE."""
    conv_out = ae_params["decoder"]["conv_out"]
    layer = "temporal" if conv_out.get("temporal") else "spatial"
    return ("decoder", "conv_out", layer, "kernel")
