"""Latent normalisation between the TAE and the DiT: z_dit = (z - shift) * scale."""
import jax


def normalize_latents(z: jax.Array, shift: float, scale: float) -> jax.Array:
    return (z - shift) * scale


def denormalize_latents(z: jax.Array, shift: float, scale: float) -> jax.Array:
    return z / scale + shift

