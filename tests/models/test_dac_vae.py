"""DAC-VAE model: lengths and latent rates, weight-norm semantics of both conv kinds (the
transposed conv is the adjoint of the strided conv), Snake, the reparameterised posterior sample,
logical axes on every parameter, sharded == unsharded, presets and config validation.
Parity with the `descript-audio-codec` package is in tests/checkpointing/test_dac_convert.py."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from mgen_jax.configs.dac_vae import dac_vae_config, hop_length, latent_rate, validate_dac_vae
from mgen_jax.configs.mesh import MESH_AXES
from mgen_jax.models.audio.conv1d import WNConv1d, WNConvTranspose1d
from mgen_jax.models.audio.dac_vae import DacVAE
from mgen_jax.models.audio.snake import Snake1d
from mgen_jax.models.pure_model import PureModel
from mgen_jax.parallel.logical_rules import rules_from_preset


def _tiny():
    """The tiny preset with two levels instead of four (odd stride 3 included): XLA compiles
    each conv on its own, and a 2-core machine pays for every one."""
    cfg = dac_vae_config("tiny")
    cfg.update(encoder_rates=(3, 4), decoder_rates=(4, 3), decoder_dim=20)
    validate_dac_vae(cfg)
    return cfg


def _model(cfg):
    return PureModel.create(lambda rngs: DacVAE(cfg, rngs=rngs))


@pytest.fixture(scope="module")
def tiny():
    """(cfg, model, params) drawn once: an RBG key, whose init XLA compiles ~4x faster on CPU."""
    cfg = _tiny()
    model = _model(cfg)
    return cfg, model, model.init(jax.random.key(0, impl="rbg"))


def _audio(batch, samples, seed=0):
    t = np.arange(samples) / 16000.0
    rng = np.random.RandomState(seed)
    tones = [0.5 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) for _ in range(batch)]
    return jnp.asarray(np.stack(tones)[..., None], jnp.float32)


def test_lengths_padding_and_reconstruction_through_a_posterior_sample(tiny):
    cfg, model, params = tiny
    hop = hop_length(cfg)
    samples = 3 * hop - 5  # not a multiple of the hop: padded on the right, as DAC does

    @jax.jit
    def run(params, audio, key):
        vae = model.bind(params)
        return vae(audio, key), vae.decode(vae.encode(audio)[0])

    audio = _audio(2, samples)
    (recon, mean, logvar), full = run(params, audio, jax.random.key(1))
    assert mean.shape == logvar.shape == (2, 3, cfg.latent_channels)
    # Decoder strides 4, 3: the odd stride's transposed conv is one sample short (as DAC's).
    assert recon.shape == audio.shape and full.shape == (2, 3 * hop - 1, 1)
    assert 0.0 < float(jnp.max(jnp.abs(recon))) < 0.99  # tanh output, not saturated at init
    again, _ = run(params, audio, jax.random.key(1))
    other, _ = run(params, audio, jax.random.key(2))
    np.testing.assert_array_equal(again[0], recon)  # the key alone decides the sample
    assert not np.allclose(other[0], recon)
    # No key: through the posterior mean (train_latent="mean"), the decode of the mean.
    through_mean = jax.jit(lambda p, a: model.bind(p)(a, None)[0])(params, audio)
    np.testing.assert_allclose(through_mean, full[:, :samples], rtol=1e-6, atol=1e-7)
    assert not np.allclose(through_mean, recon)
    # The sample is mean + exp(logvar / 2) * eps: gradients reach the encoder through both.
    loss = lambda p: jnp.sum(model.bind(p)(audio, jax.random.key(1))[0] ** 2)
    grads = jax.jit(jax.grad(loss))(params)
    assert float(jnp.abs(grads["encoder"]["conv_in"]["v"]).sum()) > 0
    assert float(jnp.abs(grads["bottleneck"]["to_moments"]["bias"][cfg.latent_channels:]
                         ).sum()) > 0


def test_weight_norm_keeps_direction_and_magnitude_apart():
    """Output depends on v only through its direction per output channel (Conv1d) or per input
    channel (ConvTranspose1d, as PyTorch's dim 0 of [in, out, k]); g scales the kernel."""
    x = jax.random.normal(jax.random.key(0), (2, 23, 5))
    for conv in (WNConv1d(5, 7, kernel=4, stride=2, padding=1, rngs=nnx.Rngs(1)),
                 WNConvTranspose1d(5, 7, kernel=6, stride=3, padding=2, rngs=nnx.Rngs(1))):
        conv.bias[...] = jnp.zeros(7)
        y = conv(x)
        per_slice = (1, 1, 7) if isinstance(conv, WNConv1d) else (1, 5, 1)
        v = conv.v[...]
        conv.v[...] = v * jnp.arange(1.0, 1.0 + math.prod(per_slice)).reshape(per_slice)
        np.testing.assert_allclose(conv(x), y, rtol=1e-5, atol=1e-6)
        across = (1, 5, 1) if isinstance(conv, WNConv1d) else (1, 1, 7)
        conv.v[...] = v * jnp.arange(1.0, 1.0 + math.prod(across)).reshape(across)
        assert not np.allclose(conv(x), y, atol=1e-3)  # rescaling across slices does change it
        conv.v[...] = v
        conv.g[...] = 2.0 * conv.g[...]
        np.testing.assert_allclose(conv(x), 2.0 * y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stride,kernel,padding", [(2, 4, 1), (5, 10, 3)])
def test_transposed_conv_is_the_adjoint_of_the_strided_conv(stride, kernel, padding):
    """With one shared weight (PyTorch's [C_b, C_a, k] for both modules) and no bias,
    <conv(x), y> = <x, conv_transpose(y)>: the transposed conv is exactly the strided conv's
    transpose, odd strides included."""
    conv = WNConv1d(3, 5, kernel=kernel, stride=stride, padding=padding, rngs=nnx.Rngs(0))
    up = WNConvTranspose1d(5, 3, kernel=kernel, stride=stride, padding=padding,
                           rngs=nnx.Rngs(1))
    up.v[...] = conv.v[...].transpose(0, 2, 1)
    up.g[...] = conv.g[...]
    conv.bias[...], up.bias[...] = jnp.zeros(5), jnp.zeros(3)
    length = 7 * stride + kernel - 2 * padding  # (L + 2p - k) divisible by the stride
    x = jax.random.normal(jax.random.key(2), (2, length, 3))
    y = jax.random.normal(jax.random.key(3), conv(x).shape)
    assert up(y).shape == x.shape
    np.testing.assert_allclose(jnp.vdot(conv(x), y), jnp.vdot(x, up(y)), rtol=1e-5)


def test_snake_is_identity_plus_a_periodic_bump():
    snake = Snake1d(3, rngs=nnx.Rngs(0))
    snake.alpha[...] = jnp.asarray([0.5, 1.0, 7.0])
    x = jnp.linspace(-4.0, 4.0, 8001)[:, None] * jnp.ones(3)
    bump = snake(x) - x
    assert float(bump.min()) >= 0.0
    np.testing.assert_allclose(bump.max(axis=0), 1.0 / snake.alpha[...], rtol=1e-3)
    period = jnp.pi / snake.alpha[...]
    np.testing.assert_allclose(snake(x + period) - snake(x), jnp.broadcast_to(period, x.shape),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_every_parameter_has_logical_axes_and_sharded_matches_unsharded(tiny):
    cfg, model, params = tiny
    for path, var in nnx.to_flat_state(model.abstract_state):
        axes = var.get_metadata().get("logical_axes")
        assert axes is not None and len(axes) == var.get_value().ndim, path
    mesh = Mesh(np.asarray(jax.devices()).reshape(1, 8, 1, 1), MESH_AXES)
    shardings = model.shardings(mesh, rules_from_preset("default"))
    sharded = jax.device_put(params, shardings)
    assert sharded["encoder"]["blocks"][1]["down"]["v"].sharding.spec[2] == "fsdp"
    forward = jax.jit(lambda p, a: model.bind(p)(a, jax.random.key(1)))
    audio = _audio(2, 2 * hop_length(cfg))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6),
                 forward(sharded, audio), forward(params, audio))


# (preset, sample rate, hop, latent rate, latent channels, parameter range): the paper's 48 kHz
# -> 25 Hz codec (DAC's 44 kHz one is 76M with its RVQ) and the audio-visual quickstart's.
PRESETS = [("paper", 48000, 1920, 25.0, 128, (70e6, 100e6)),
           ("quickstart", 8000, 160, 50.0, 15, (0.1e6, 0.2e6))]


@pytest.mark.parametrize("size, rate, hop, frames_per_s, channels, params_range", PRESETS)
def test_presets_map_a_second_to_their_latent_rate_and_back(size, rate, hop, frames_per_s,
                                                            channels, params_range):
    cfg = dac_vae_config(size)
    assert (cfg.sample_rate, hop_length(cfg), latent_rate(cfg)) == (rate, hop, frames_per_s)
    model = _model(cfg)
    one_second = jax.ShapeDtypeStruct((1, rate, 1), jnp.float32)
    params = model.abstract_params()
    mean, _ = jax.eval_shape(lambda p, a: model.bind(p).encode(a), params, one_second)
    recon = jax.eval_shape(lambda p, z: model.bind(p).decode(z), params, mean)
    assert mean.shape == (1, frames_per_s, channels) and recon.shape == (1, rate, 1)
    assert params_range[0] < model.num_params() < params_range[1]


def test_config_validation_names_the_key():
    cfg = _tiny()
    cfg.decoder_rates = (10, 8, 4, 3)
    with pytest.raises(ValueError, match="dac_vae.decoder_rates"):
        validate_dac_vae(cfg)
    cfg = _tiny()
    cfg.decoder_dim = 42  # two halvings need a multiple of 4
    with pytest.raises(ValueError, match="dac_vae.decoder_dim"):
        validate_dac_vae(cfg)
    cfg = _tiny()
    cfg.train_latent = "sample"
    with pytest.raises(ValueError, match="dac_vae.train_latent"):
        validate_dac_vae(cfg)
    with pytest.raises(ValueError, match="unknown"):
        dac_vae_config("huge")
