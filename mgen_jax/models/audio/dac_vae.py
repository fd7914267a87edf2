"""DAC-VAE: the Descript Audio Codec's encoder and decoder around a VAE bottleneck (Movie Gen
Audio's audio autoencoder, "DAC with its RVQ removed, trained as a VAE").

    audio [B, T, 1] --encoder--> features [B, T/hop, feature_dim]      (DAC's Encoder, as is)
                    --bottleneck.to_moments (1x1)--> mean, logvar [B, T/hop, latent_channels]
    z = mean + exp(logvar / 2) * eps
                    --bottleneck.from_latents (1x1)--> [B, T/hop, feature_dim]
                    --decoder--> audio [B, ~T, 1]

The encoder and decoder are DAC's (Snake activations, weight-normalised convs, residual units
with dilations 1, 3, 9, strided convs down and transposed convs up, tanh out), so DAC's published
weights fill them (checkpointing/dac_convert.py). The bottleneck's two 1x1 projections take the
place of DAC's quantiser, whose per-codebook in/out projections are also 1x1 weight-normed convs.
Channels-last throughout; waveforms are mono [B, T, 1] in [-1, 1].
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.configs.dac_vae import hop_length
from mgen_jax.models.audio.conv1d import WNConv1d, WNConvTranspose1d
from mgen_jax.models.audio.snake import Snake1d

DILATIONS = (1, 3, 9)


class ResidualUnit(nnx.Module):
    """x + conv1x1(snake(conv7_dilated(snake(x)))): same length in and out."""

    def __init__(self, dim: int, dilation: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.snake1 = Snake1d(dim, rngs=rngs)
        self.conv1 = WNConv1d(dim, dim, kernel=7, dilation=dilation, padding=3 * dilation,
                              rngs=rngs, dtype=dtype)
        self.snake2 = Snake1d(dim, rngs=rngs)
        self.conv2 = WNConv1d(dim, dim, kernel=1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.conv2(self.snake2(self.conv1(self.snake1(x))))
        crop = (x.shape[1] - y.shape[1]) // 2  # zero with DAC's padding; kept for generality
        return (x[:, crop:x.shape[1] - crop] if crop > 0 else x) + y


class EncoderBlock(nnx.Module):
    """Three residual units at dim // 2, then snake and a strided conv to dim (T -> T / stride)."""

    def __init__(self, dim: int, stride: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.res = nnx.List([ResidualUnit(dim // 2, d, rngs=rngs, dtype=dtype) for d in DILATIONS])
        self.snake = Snake1d(dim // 2, rngs=rngs)
        self.down = WNConv1d(dim // 2, dim, kernel=2 * stride, stride=stride,
                             padding=math.ceil(stride / 2), rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        for unit in self.res:
            x = unit(x)
        return self.down(self.snake(x))


class DacEncoder(nnx.Module):
    """audio [B, T, 1] -> features [B, T / hop, feature_dim]; widths double at every stride."""

    def __init__(self, cfg, *, rngs: nnx.Rngs, dtype=jnp.float32):
        dim = cfg.encoder_dim
        self.conv_in = WNConv1d(1, dim, kernel=7, padding=3, rngs=rngs, dtype=dtype)
        self.blocks = nnx.List()
        for stride in cfg.encoder_rates:
            dim *= 2
            self.blocks.append(EncoderBlock(dim, stride, rngs=rngs, dtype=dtype))
        self.snake_out = Snake1d(dim, rngs=rngs)
        self.conv_out = WNConv1d(dim, cfg.feature_dim, kernel=3, padding=1, rngs=rngs,
                                 dtype=dtype)

    def __call__(self, audio: jax.Array) -> jax.Array:
        x = self.conv_in(audio)
        for block in self.blocks:
            x = block(x)
        return self.conv_out(self.snake_out(x))


class DecoderBlock(nnx.Module):
    """Snake, a transposed conv in_dim -> out_dim (T -> T * stride, one sample less for an odd
    stride, as in DAC), then three residual units."""

    def __init__(self, in_dim: int, out_dim: int, stride: int, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.snake = Snake1d(in_dim, rngs=rngs)
        self.up = WNConvTranspose1d(in_dim, out_dim, kernel=2 * stride, stride=stride,
                                    padding=math.ceil(stride / 2), rngs=rngs, dtype=dtype)
        self.res = nnx.List([ResidualUnit(out_dim, d, rngs=rngs, dtype=dtype) for d in DILATIONS])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.up(self.snake(x))
        for unit in self.res:
            x = unit(x)
        return x


class DacDecoder(nnx.Module):
    """features [B, t, feature_dim] -> audio [B, ~t * hop, 1] in (-1, 1); widths halve from
    decoder_dim at every stride."""

    def __init__(self, cfg, *, rngs: nnx.Rngs, dtype=jnp.float32):
        dim = cfg.decoder_dim
        self.conv_in = WNConv1d(cfg.feature_dim, dim, kernel=7, padding=3, rngs=rngs,
                                dtype=dtype)
        self.blocks = nnx.List()
        for stride in cfg.decoder_rates:
            self.blocks.append(DecoderBlock(dim, dim // 2, stride, rngs=rngs, dtype=dtype))
            dim //= 2
        self.snake_out = Snake1d(dim, rngs=rngs)
        self.conv_out = WNConv1d(dim, 1, kernel=7, padding=3, rngs=rngs, dtype=dtype)

    def __call__(self, features: jax.Array) -> jax.Array:
        x = self.conv_in(features)
        for block in self.blocks:
            x = block(x)
        return jnp.tanh(self.conv_out(self.snake_out(x)))


class VAEBottleneck(nnx.Module):
    """Where DAC has its residual vector quantiser: features -> (mean, logvar) of the latent
    posterior, and latents -> features; 1x1 weight-normed convs, as DAC's quantiser projections."""

    def __init__(self, feature_dim: int, latent_channels: int, *, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        self.to_moments = WNConv1d(feature_dim, 2 * latent_channels, rngs=rngs, dtype=dtype)
        self.from_latents = WNConv1d(latent_channels, feature_dim, rngs=rngs, dtype=dtype)

    def moments(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.to_moments(features), 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def features(self, z: jax.Array) -> jax.Array:
        return self.from_latents(z)


class DacVAE(nnx.Module):
    def __init__(self, cfg, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.hop_length = hop_length(cfg)
        self.latent_channels = cfg.latent_channels
        self.encoder = DacEncoder(cfg, rngs=rngs, dtype=dtype)
        self.bottleneck = VAEBottleneck(cfg.feature_dim, cfg.latent_channels, rngs=rngs,
                                        dtype=dtype)
        self.decoder = DacDecoder(cfg, rngs=rngs, dtype=dtype)

    def latent_frames(self, num_samples: int) -> int:
        return -(-num_samples // self.hop_length)

    def features(self, audio: jax.Array) -> jax.Array:
        """audio [B, T, 1] -> DAC's pre-bottleneck features [B, ceil(T / hop), feature_dim].
        The waveform is right-padded with zeros to a multiple of the hop, as DAC does."""
        if audio.ndim != 3 or audio.shape[-1] != 1:
            raise ValueError(f"DacVAE expects mono audio [B, T, 1], got shape {audio.shape}")
        pad = self.latent_frames(audio.shape[1]) * self.hop_length - audio.shape[1]
        return self.encoder(jnp.pad(audio, ((0, 0), (0, pad), (0, 0))))

    def encode(self, audio: jax.Array) -> tuple[jax.Array, jax.Array]:
        """audio [B, T, 1] -> (mean, logvar) of the posterior, each [B, ceil(T / hop), latent]."""
        return self.bottleneck.moments(self.features(audio))

    def decode(self, z: jax.Array, num_samples: int | None = None) -> jax.Array:
        """latents [B, t, latent] -> audio [B, num_samples, 1] (default t * hop; a decoder with
        an odd stride returns fewer samples, as DAC's does)."""
        audio = self.decoder(self.bottleneck.features(z))
        return audio[:, :num_samples] if num_samples is not None else audio

    def __call__(self, audio: jax.Array, key: jax.Array | None
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Reconstruction through a posterior sample (reparameterised), or through the posterior
        mean when key is None; (recon, mean, logvar)."""
        mean, logvar = self.encode(audio)
        z = mean if key is None else (
            mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype))
        return self.decode(z, audio.shape[1]), mean, logvar
