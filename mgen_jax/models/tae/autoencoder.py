"""The temporal autoencoder (TAE): KL-regularised, 8x compression in T, H and W by default.

Any frame count encodes: strided temporal convs give ceil(T/8) latent frames, and decode crops
the spurious trailing frames back to the requested length (images are 1-frame videos)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.tae.decoder import Decoder
from mgen_jax.models.tae.encoder import Encoder
from mgen_jax.models.tae.pixel_patch import depth_to_space_time, space_time_to_depth


class TemporalAutoencoder(nnx.Module):
    def __init__(self, cfg, *, temporal: bool = True, rngs: nnx.Rngs):
        self.patch = tuple(cfg.pixel_patch) if temporal else (1, cfg.pixel_patch[1])
        channels = 3 * self.patch[0] * self.patch[1] ** 2
        self.encoder = Encoder(cfg, in_channels=channels, temporal=temporal, rngs=rngs)
        self.decoder = Decoder(cfg, out_channels=channels, temporal=temporal, rngs=rngs)

    def encode(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        """video [B, T, H, W, 3] in [-1, 1] -> (mean, logvar) of the latent posterior."""
        return self.encoder(space_time_to_depth(video, self.patch))

    def decode(self, z: jax.Array, num_frames: int | None = None) -> jax.Array:
        """latents [B, t, h, w, z] -> video [B, num_frames, H, W, 3] (spurious frames dropped)."""
        video = depth_to_space_time(self.decoder(z), self.patch)
        return video if num_frames is None else video[:, :num_frames]

    def __call__(self, video: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Reconstruction through a posterior sample; returns (recon, mean, logvar)."""
        mean, logvar = self.encode(video)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return self.decode(z, video.shape[1]), mean, logvar


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(q(z|x) || N(0, I)), summed over latent elements, averaged over the batch."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.mean(jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1))
