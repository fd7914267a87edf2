"""Temporal autoencoder: any length round-trips, and inflation starts equal to the image model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgen_jax.configs.tae import tae_config
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder, kl_divergence


def _tiny(**kw):
    cfg = tae_config("tiny")
    cfg.update(ch=8, ch_mult=(1, 2, 2, 2), norm_groups=4, z_channels=5, pixel_patch=(1, 1),
               temporal_downsamples=3)
    cfg.update(**kw)
    return cfg


# Jitted entry points: eager execution of a conv net op by op is slow on CPU.
encode = nnx.jit(lambda model, video: model.encode(video))
decode = nnx.jit(lambda model, z, frames: model.decode(z, frames), static_argnums=2)
forward = nnx.jit(lambda model, video, key: model(video, key))


@pytest.fixture(scope="module")
def tae():
    return TemporalAutoencoder(_tiny(), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("frames", [1, pytest.param(17, marks=pytest.mark.slow),
                                    pytest.param(33, marks=pytest.mark.slow)])
def test_any_frame_count_round_trips_to_its_own_length(tae, frames):
    video = jax.random.uniform(jax.random.key(frames), (2, frames, 24, 40, 3), minval=-1, maxval=1)
    mean, logvar = encode(tae, video)
    assert mean.shape == (2, -(-frames // 8), 3, 5, 5) and logvar.shape == mean.shape
    out = decode(tae, mean, frames)
    assert out.shape == video.shape
    recon, _, _ = forward(tae, video, jax.random.key(1))
    assert recon.shape == video.shape and bool(jnp.all(jnp.isfinite(recon)))


@pytest.mark.parametrize("frames", [1, 17])
def test_pixel_patched_variant_keeps_8x_and_round_trips(frames):
    cfg = _tiny(ch_mult=(1, 2, 2), pixel_patch=(2, 2), temporal_downsamples=2)
    model = TemporalAutoencoder(cfg, rngs=nnx.Rngs(0))
    video = jax.random.uniform(jax.random.key(0), (1, frames, 16, 32, 3), minval=-1, maxval=1)
    mean, _ = encode(model, video)
    assert mean.shape == (1, -(-frames // 8), 2, 4, 5)
    assert decode(model, mean, frames).shape == video.shape


@pytest.mark.parametrize("frames", [1, 17])
def test_fewer_spatial_downsamples_keep_a_finer_grid(frames):
    """The quickstart's layout: a 4x2x2 patch, one level that halves space and time, one that
    adds channels only: 8x in time, 4x in space; the spatial-only / temporal-only resamplers."""
    cfg = _tiny(ch_mult=(1, 2, 2), pixel_patch=(4, 2), temporal_downsamples=1,
                spatial_downsamples=1)
    model = TemporalAutoencoder(cfg, rngs=nnx.Rngs(0))
    assert (model.temporal_compression, model.spatial_compression) == (8, 4)
    first, second = (level["down"] for level in model.encoder.levels[:2])
    assert first.spatial is not None and first.temporal is not None
    assert second is None  # the second level only adds channels
    video = jax.random.uniform(jax.random.key(0), (1, frames, 16, 24, 3), minval=-1, maxval=1)
    mean, _ = encode(model, video)
    assert mean.shape == (1, -(-frames // 8), 4, 6, 5)
    assert decode(model, mean, frames).shape == video.shape


def _copy_spatial(image_model, video_model):
    """Put the image model's weights into the inflated model's spatial layers."""
    image_state = nnx.to_flat_state(nnx.state(image_model))
    video_state = nnx.state(video_model)
    flat = dict(nnx.to_flat_state(video_state))
    for path, var in image_state:
        assert path in flat, f"inflated model lacks image parameter {path}"
        flat[path].set_value(var.get_value())
    nnx.update(video_model, nnx.from_flat_state(flat))


def test_inflated_model_equals_image_model_frame_by_frame_at_init():
    cfg = _tiny(temporal_downsamples=0)
    image = TemporalAutoencoder(cfg, temporal=False, rngs=nnx.Rngs(1))
    video = TemporalAutoencoder(cfg, temporal=True, rngs=nnx.Rngs(2))
    _copy_spatial(image, video)
    clip = jax.random.uniform(jax.random.key(3), (2, 5, 16, 16, 3), minval=-1, maxval=1)
    mean_v, _ = encode(video, clip)
    frames = clip.reshape(10, 1, 16, 16, 3)  # every frame as its own 1-frame video
    mean_i, _ = encode(image, frames)
    np.testing.assert_allclose(mean_v.reshape(mean_i.shape), mean_i, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(decode(video, mean_v, 5).reshape(10, 1, 16, 16, 3),
                               decode(image, mean_i, 1), rtol=1e-5, atol=1e-5)
    # With temporal compression, a 1-frame video (an image) still equals the image model.
    full = TemporalAutoencoder(_tiny(), temporal=True, rngs=nnx.Rngs(4))
    _copy_spatial(image, full)
    np.testing.assert_allclose(encode(full, frames[:2])[0], encode(image, frames[:2])[0],
                               rtol=1e-5, atol=1e-5)


def test_kl_is_zero_for_standard_normal_posterior():
    zeros = jnp.zeros((2, 1, 2, 2, 3))
    assert float(kl_divergence(zeros, zeros)) == 0.0
    assert float(kl_divergence(zeros + 1.0, zeros)) == pytest.approx(0.5 * 12)
