"""The temporal autoencoder (TAE): KL-regularised, 8x compression in T, H and W by default.

Any frame count encodes: strided temporal convs give ceil(T/8) latent frames, and decode crops
the spurious trailing frames back to the requested length (images are 1-frame videos)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.tae.decoder import Decoder
from mgen_jax.models.tae.encoder import Encoder
from mgen_jax.models.tae import tiling
from mgen_jax.configs.tae import DEFAULT_TILING, spatial_downsamples
from mgen_jax.models.tae.pixel_patch import depth_to_space_time, space_time_to_depth


class TemporalAutoencoder(nnx.Module):
    def __init__(self, cfg, *, temporal: bool = True, rngs: nnx.Rngs):
        self.patch = tuple(cfg.pixel_patch) if temporal else (1, cfg.pixel_patch[1])
        levels = len(cfg.ch_mult) - 1
        self.spatial_compression = self.patch[1] * 2 ** spatial_downsamples(cfg)
        downsamples = min(cfg.temporal_downsamples, levels) if temporal else 0  # first levels only
        self.temporal_compression = self.patch[0] * 2 ** downsamples
        self.z_channels = cfg.z_channels
        # A tuple of items: static module data, not a pytree of state.
        self.tiling = tuple(sorted(dict(cfg.get("tiling", DEFAULT_TILING)).items()))
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

    def encode_tiled(self, video: jax.Array) -> tuple[jax.Array, jax.Array]:
        """encode() in temporal tiles (no overlap) and, for large frames, overlapping spatial
        tiles, as configured in tae.tiling; see tiling.py."""
        t = dict(self.tiling)
        return tiling.encode_tiled(
            self.encode, video, temporal_compression=self.temporal_compression,
            spatial_compression=self.spatial_compression, z_channels=self.z_channels,
            tile_frames=t["encode_frames"],
            spatial_tile=t["spatial_tile"] * self.spatial_compression,
            spatial_overlap=t["spatial_overlap"] * self.spatial_compression)

    def decode_tiled(self, z: jax.Array, num_frames: int | None = None) -> jax.Array:
        """decode() in overlapping temporal tiles blended linearly (and spatial tiles for large
        latent frames), as configured in tae.tiling: memory flat in the clip length."""
        t = dict(self.tiling)
        return tiling.decode_tiled(
            self.decode, z, temporal_compression=self.temporal_compression,
            spatial_compression=self.spatial_compression, num_frames=num_frames,
            tile_latents=t["decode_latents"], overlap_latents=t["decode_overlap"],
            spatial_tile=t["spatial_tile"], spatial_overlap=t["spatial_overlap"])

    def __call__(self, video: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Reconstruction through a posterior sample; returns (recon, mean, logvar)."""
        mean, logvar = self.encode(video)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
        return self.decode(z, video.shape[1]), mean, logvar


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(q(z|x) || N(0, I)), summed over latent elements, averaged over the batch."""
    kl = 0.5 * (jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.mean(jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1))
