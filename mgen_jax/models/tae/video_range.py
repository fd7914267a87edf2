"""Pixel values between storage and the autoencoder: uint8 [0, 255] <-> float [-1, 1], and PSNR
measured on the float range."""
import jax
import jax.numpy as jnp


def video_to_float(video_uint8: jax.Array) -> jax.Array:
    return video_uint8.astype(jnp.float32) / 127.5 - 1.0


def float_to_video(video: jax.Array) -> jax.Array:
    """float video in [-1, 1] (clipped) -> uint8."""
    return jnp.round((jnp.clip(video, -1, 1) + 1) * 127.5).astype(jnp.uint8)


def psnr(a: jax.Array, b: jax.Array) -> jax.Array:
    """PSNR in dB for videos in [-1, 1] (peak-to-peak 2)."""
    mse = jnp.mean(jnp.square(jnp.clip(a, -1, 1) - b))
    return 10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10))
