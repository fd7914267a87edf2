"""Tiled TAE inference: exact where tiling must be exact, one scan body, any length, sharded H."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mgen_jax.configs.tae import tae_config
from mgen_jax.models.tae import tiling
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder


def _tiny(**kw):
    cfg = tae_config("tiny")
    cfg.update(ch=8, ch_mult=(1, 2, 2), norm_groups=4, z_channels=3, pixel_patch=(2, 2),
               temporal_downsamples=2)
    cfg.update(**kw)
    return cfg


@pytest.fixture(scope="module")
def tae():
    return TemporalAutoencoder(_tiny(), rngs=nnx.Rngs(0))


def _pointwise_decoder(z):
    """A 'decoder' with no receptive field in time or space: tiling must reproduce it exactly."""
    video = jnp.tanh(z[..., :3] * 1.7 + z[..., 1:2])
    video = jnp.repeat(jnp.repeat(jnp.repeat(video, 8, axis=1), 4, axis=2), 4, axis=3)
    return video


@pytest.mark.parametrize("latent_frames", [1, 4, 5, 7, 10])
def test_temporal_tiles_blend_to_the_untiled_output_of_a_pointwise_decoder(latent_frames):
    z = jax.random.normal(jax.random.key(latent_frames), (2, latent_frames, 3, 5, 4))
    frames = latent_frames * 8 - 3
    tiled = tiling.decode_tiled(_pointwise_decoder, z, temporal_compression=8,
                                spatial_compression=4, num_frames=frames)
    np.testing.assert_allclose(tiled, _pointwise_decoder(z)[:, :frames], atol=1e-6)


def test_spatial_tiles_blend_to_the_untiled_output_of_a_pointwise_decoder():
    z = jax.random.normal(jax.random.key(0), (1, 2, 11, 13, 4))  # odd sizes, last tile flush
    tiled = tiling.decode_tiled(_pointwise_decoder, z, temporal_compression=8,
                                spatial_compression=4, spatial_tile=4, spatial_overlap=2)
    np.testing.assert_allclose(tiled, _pointwise_decoder(z), atol=1e-6)


def test_spatial_encode_tiles_of_a_pointwise_encoder_are_exact():
    def encode(video):  # 4x4 average pooling per frame, 2x in time: no cross-window context
        b, t, h, w, c = video.shape
        x = video.reshape(b, t // 2, 2, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4, 6))
        return x, -x
    video = jax.random.normal(jax.random.key(1), (1, 6, 36, 28, 3))
    mean, logvar = tiling.encode_tiled(encode, video, temporal_compression=2, spatial_compression=4,
                                       z_channels=3, tile_frames=2, spatial_tile=16,
                                       spatial_overlap=8)
    ref_mean, ref_logvar = encode(video)
    np.testing.assert_allclose(mean, ref_mean, atol=1e-6)
    np.testing.assert_allclose(logvar, ref_logvar, atol=1e-6)


@pytest.mark.parametrize("frames", [1, 70])  # 17 and 33 untiled: test_tae.py
def test_tiled_round_trip_keeps_every_length(tae, frames):
    video = jax.random.uniform(jax.random.key(frames), (1, frames, 16, 16, 3), minval=-1, maxval=1)
    run = nnx.jit(lambda m, v: m.decode_tiled(m.encode_tiled(v)[0], v.shape[1]))
    out = run(tae, video)
    assert out.shape == video.shape and bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow  # compiles tiled and untiled TAE
def test_tiles_within_one_tile_equal_the_untiled_model(tae):
    video = jax.random.uniform(jax.random.key(2), (2, 29, 16, 40, 3), minval=-1, maxval=1)
    mean, logvar = nnx.jit(lambda m, v: m.encode_tiled(v))(tae, video)
    ref_mean, ref_logvar = nnx.jit(lambda m, v: m.encode(v))(tae, video)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logvar, ref_logvar, rtol=1e-5, atol=1e-5)
    out = nnx.jit(lambda m, z: m.decode_tiled(z, 29))(tae, mean)
    np.testing.assert_allclose(out, nnx.jit(lambda m, z: m.decode(z, 29))(tae, mean),
                               rtol=1e-5, atol=1e-5)


def _count(jaxpr_text: str, op: str) -> int:
    return jaxpr_text.count(op)


def test_all_tiles_run_in_one_scan_body(tae):
    """The decoder appears once in the program however many tiles there are."""
    graphdef, state = nnx.split(tae)

    def tiled(state, z):
        return nnx.merge(graphdef, state).decode_tiled(z)

    def single(state, z):
        return nnx.merge(graphdef, state).decode(z)

    one_tile = str(jax.make_jaxpr(single)(state, jnp.zeros((1, 4, 2, 3, 3))))
    for t in (9, 30):
        text = str(jax.make_jaxpr(tiled)(state, jnp.zeros((1, t, 2, 3, 3))))
        assert _count(text, "conv_general_dilated") == _count(one_tile, "conv_general_dilated")
        assert "scan" in text


def test_decode_with_frames_sharded_over_a_spatial_mesh_axis_matches(tae):
    """Large frames: the latent H axis split over 4 devices (XLA adds the conv halos)."""
    mesh = Mesh(np.asarray(jax.devices()[:4]).reshape(4), ("context",))
    z = jax.random.normal(jax.random.key(3), (1, 5, 8, 6, 3))
    graphdef, state = nnx.split(tae)
    spec = NamedSharding(mesh, P(None, None, "context", None, None))

    def decode(state, z):
        return nnx.merge(graphdef, state).decode_tiled(z)

    sharded = jax.jit(decode, in_shardings=(None, spec), out_shardings=spec)(
        state, jax.device_put(z, spec))
    assert sharded.sharding.spec == spec.spec
    np.testing.assert_allclose(sharded, jax.jit(decode)(state, z), rtol=1e-5, atol=1e-5)


def test_bad_tiling_arguments_are_named():
    with pytest.raises(ValueError, match="overlap"):
        tiling.decode_tiled(_pointwise_decoder, jnp.zeros((1, 9, 2, 2, 3)), temporal_compression=8,
                            spatial_compression=4, tile_latents=4, overlap_latents=3)
    with pytest.raises(ValueError, match="multiple"):
        tiling.encode_tiled(lambda v: (v, v), jnp.zeros((1, 40, 8, 8, 3)), temporal_compression=8,
                            spatial_compression=4, z_channels=3, tile_frames=20)
