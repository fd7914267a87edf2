"""TAE loss terms: OPL against a hand computation, GAN pieces, config keys, and the GAN train step
(gradients of each network from its own loss, discriminator idle before disc_start)."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.tae import tae_config
from mgen_jax.configs.validation import ConfigError, validate
from mgen_jax.models.builders import build_tae
from mgen_jax.checkpointing.lpips_convert import lpips_model
from mgen_jax.models.tae.autoencoder import kl_divergence
from mgen_jax.models.tae.gan_pair import build_tae_with_discriminator, last_decoder_layer
from mgen_jax.training import tae_losses
from mgen_jax.training.tae_gan_step import (make_tae_gan_grad_fn, make_tae_gan_train_step,
                                            split_optimizer)
from mgen_jax.training.tae_losses import (adaptive_weight, disc_factor, generator_adversarial_loss,
                                          hinge_d_loss, outlier_penalty_loss)
from mgen_jax.training.tae_step import TaeLossWeights, make_tae_train_step
from mgen_jax.training.train_state import TrainState

# XLA's backend optimisations double the compile time of these tiny, run-once graphs.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _opl_reference(z, r):
    """The paper's formula, loop by loop, in float64."""
    z = np.asarray(z, np.float64)
    b, t, h, w, _ = z.shape
    out = []
    for i in range(b):
        for j in range(t):
            frame = z[i, j].reshape(h * w, -1)
            mean, std = frame.mean(0), frame.std(0)
            per_loc = [max(np.linalg.norm(x - mean) - r * np.linalg.norm(std), 0.0) for x in frame]
            out.append(np.mean(per_loc))
    return np.mean(out)


def test_outlier_penalty_matches_the_paper_formula():
    outlier_penalty_loss = jax.jit(tae_losses.outlier_penalty_loss, static_argnames="r")
    z = jax.random.normal(jax.random.key(0), (2, 2, 6, 6, 4))
    # Gaussian latents: no location is 3 "standard radii" out (chi_4 > 6 has p ~ 1e-7).
    assert float(outlier_penalty_loss(z)) == pytest.approx(_opl_reference(z, 3.0), abs=1e-7)
    assert float(outlier_penalty_loss(z)) < 1e-6
    spot = z.at[1, 0, 2, 3].set(jnp.array([9.0, -7.0, 8.0, 6.0]))
    value = float(outlier_penalty_loss(spot))
    assert value > 0.01 and value == pytest.approx(_opl_reference(spot, 3.0), rel=1e-5)
    assert float(outlier_penalty_loss(z, r=0.5)) == pytest.approx(_opl_reference(z, 0.5), rel=1e-5)
    grad = jax.grad(outlier_penalty_loss)(spot)
    mag = jnp.linalg.norm(grad, axis=-1)
    assert np.unravel_index(int(jnp.argmax(mag)), mag.shape) == (1, 0, 2, 3)
    assert bool(jnp.all(jnp.isfinite(jax.grad(outlier_penalty_loss)(jnp.zeros((1, 1, 2, 2, 3))))))


def test_gan_loss_pieces():
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.0])
    expected = 0.5 * (np.mean([0.0, 0.5, 2.0]) + np.mean([0.0, 1.0, 2.0]))
    assert float(hinge_d_loss(real, fake)) == pytest.approx(expected)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(1 / 3)
    assert float(adaptive_weight(jnp.array(2.0), jnp.array(0.5))) == pytest.approx(2 / 0.5001)
    assert float(adaptive_weight(jnp.array(2.0), jnp.array(0.0))) == 1e4  # clipped
    assert jax.grad(lambda a: adaptive_weight(a, jnp.array(1.0)))(1.0) == 0.0  # stop-gradient
    factor = jax.jit(disc_factor, static_argnums=1)
    assert [float(factor(jnp.int32(s), 3)) for s in (0, 2, 3, 10)] == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("override, named", [
    (dict(perceptual_weight=1.0), "tae.lpips_checkpoint"),
    (dict(perceptual_weight=1.0, lpips_checkpoint="a.pth,b.pth,c.pth"), "tae.lpips_checkpoint"),
    (dict(disc_weight=0.5, disc_layers=5), "tae.disc_layers"),
    (dict(opl_weight=-1.0), "tae.opl_weight"),
    (dict(opl_r=0.0), "tae.opl_r"),
    (dict(disc_start=-1), "tae.disc_start"),
])
def test_loss_config_errors_name_the_key(override, named):
    cfg = default_experiment()
    assert cfg.tae.opl_weight == 0.0 and cfg.tae.disc_weight == 0.0  # today's loss by default
    validate(cfg)
    cfg.tae.update(override)
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        validate(cfg)


def _tiny_cfg():
    cfg = tae_config("tiny")
    cfg.update(ch=8, ch_mult=(1, 2), norm_groups=4, z_channels=4, pixel_patch=(1, 1),
               temporal_downsamples=1, attention=False, disc_ndf=8, disc_layers=2)
    return cfg


def _video(seed=0):
    return jax.random.randint(jax.random.key(seed), (1, 5, 16, 16, 3), 0, 256).astype(jnp.uint8)


@pytest.fixture(scope="module")
def pair():
    """The tiny TAE + discriminator and its params, initialised once (compiles are the cost)."""
    cfg = _tiny_cfg()
    model = build_tae_with_discriminator(cfg)
    # An RBG key: XLA compiles its init in a quarter of threefry's time on CPU.
    return cfg, model, model.init(jax.random.key(0, impl="rbg"))


def _random_lpips_params(lpips):
    """He-normal trunk, positive heads, drawn in numpy: a 15M-parameter jitted init would cost
    more than the step under test."""
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if "lins" in name:
            return jnp.asarray(rng.uniform(0, 0.1, leaf.shape), jnp.float32)
        if name.endswith("['bias']"):
            return jnp.asarray(rng.normal(0, 0.05, leaf.shape), jnp.float32)
        fan_in = np.prod(leaf.shape[:-1])
        return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, lpips.abstract_params())


def test_plain_step_keeps_its_signature_and_adds_opl(pair):
    cfg, _, pair_params = pair
    exp = default_experiment()
    exp.tae = cfg
    tae = build_tae(exp)
    opt = optax.adam(1e-3)
    state = TrainState.create(pair_params["autoencoder"], opt)  # the pair's TAE half is a TAE
    step = fast_jit(make_tae_train_step(tae, opt, 1e-6, 1.0, 1.0, opl_weight=1e2))
    state, m = step(state, {"video": _video()}, jax.random.key(2))
    assert {"loss", "l1", "mse", "kl", "opl", "psnr", "grad_norm"} <= set(m)
    assert all(bool(jnp.isfinite(v)) for v in m.values())
    # The loss is the weighted sum of the logged terms (OPL in, LPIPS off).
    expected = m["l1"] + m["mse"] + 1e-6 * m["kl"] + 1e2 * m["opl"]
    assert float(m["loss"]) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="LPIPS"):
        make_tae_train_step(tae, opt, 1e-6, perceptual_weight=1.0)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


@pytest.mark.slow  # compiles the GAN step
def test_gan_gradients_come_from_own_losses_and_adaptive_weight_matches_taming(pair):
    _, model, params = pair
    weights = TaeLossWeights(kl_weight=1e-3, mse_weight=1.0, l1_weight=1.0, opl_weight=10.0)
    video = jnp.asarray(_video(), jnp.float32) / 127.5 - 1
    key, disc_weight = jax.random.key(3), 0.7
    grad_fn = fast_jit(make_tae_gan_grad_fn(model, weights, disc_weight=disc_weight, disc_start=1))
    grads, m = grad_fn(params, None, video, key, jnp.int32(1))
    assert float(m["disc_factor"]) == 1.0
    path = last_decoder_layer(params["autoencoder"])
    assert path == ("decoder", "conv_out", "temporal", "kernel")

    def terms(ae_p, d_p):
        net = model.bind({"autoencoder": ae_p, "discriminator": d_p})
        recon, mean, logvar = net.autoencoder(video, key)
        nll = jnp.mean(jnp.abs(recon - video)) + jnp.mean(jnp.square(recon - video))
        reg = 1e-3 * kl_divergence(mean, logvar) + 10.0 * outlier_penalty_loss(mean)
        g = generator_adversarial_loss(net.discriminator(recon))
        d = hinge_d_loss(net.discriminator(video), net.discriminator(jax.lax.stop_gradient(recon)))
        return nll, g, reg, d

    @fast_jit
    def reference(ae_p, d_p, d_weight):
        # Gradient of each generator term w.r.t. every autoencoder parameter (one forward, one
        # batched backward: the cheapest compile); the kernel rows are the adaptive weight's.
        rows = jax.jacrev(lambda p: jnp.stack(terms(p, d_p)[:3]))(ae_p)
        # The generator loss alone (adaptive weight a constant) for the autoencoder; the hinge
        # loss alone for the discriminator.
        gen = jax.tree.map(lambda r: r[0] + r[2] + disc_weight * d_weight * r[1], rows)
        disc = jax.grad(lambda p: terms(ae_p, p)[3])(d_p)
        return _get(rows, path)[0], _get(rows, path)[1], gen, disc

    k_nll, k_g, ref_ae, ref_d = reference(params["autoencoder"], params["discriminator"],
                                          m["d_weight"])
    by_hand = np.linalg.norm(k_nll) / (np.linalg.norm(k_g) + 1e-4)
    assert float(m["d_weight"]) == pytest.approx(min(by_hand, 1e4), rel=1e-4)
    for ours, ref in ((grads["autoencoder"], ref_ae), (grads["discriminator"], ref_d)):
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):  # float32 summation order
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(b))))


@pytest.mark.slow  # compiles the GAN step
def test_gan_step_discriminator_waits_for_disc_start(pair):
    _, model, params = pair
    opt, lpips = optax.adam(1e-3), lpips_model()
    state = TrainState.create(params, opt)
    step = fast_jit(make_tae_gan_train_step(model, opt, kl_weight=1e-6, mse_weight=1.0,
                                           opl_weight=1.0, perceptual_weight=0.5, lpips=lpips,
                                           disc_weight=1.0, disc_start=2))
    lpips_params = _random_lpips_params(lpips)
    disc0, ae0 = params["discriminator"], params["autoencoder"]
    for i in range(2):
        state, m = step(state, lpips_params, {"video": _video(i)}, jax.random.key(i))
        assert float(m["disc_factor"]) == 0.0 and float(m["d_loss"]) == 0.0
    jax.tree.map(np.testing.assert_array_equal, state.params["discriminator"], disc0)
    kernel = ("decoder", "conv_in", "spatial", "kernel")
    assert not np.array_equal(_get(state.params["autoencoder"], kernel), _get(ae0, kernel))
    state, m = step(state, lpips_params, {"video": _video(2)}, jax.random.key(2))
    assert float(m["disc_factor"]) == 1.0 and float(m["d_loss"]) > 0
    assert all(bool(jnp.isfinite(v)) for v in m.values()) and float(m["perceptual"]) > 0
    assert {"loss", "g_loss", "d_loss", "d_weight", "disc_factor", "psnr", "opl", "kl",
            "perceptual", "l1", "mse"} <= set(m)
    # Every discriminator kernel moves (a bias may not: with all logits inside the hinge margin
    # the head bias' gradient is exactly 0.5 - 0.5).
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params["discriminator"]):
        if jax.tree_util.keystr(path).endswith("['kernel']"):
            assert not np.array_equal(leaf, _get(disc0, [p.key for p in path]))


def test_split_optimizer_keeps_each_half_to_its_own_transform():
    params = {"autoencoder": {"w": jnp.ones(2)}, "discriminator": {"w": jnp.ones(2)}}
    opt = split_optimizer(optax.sgd(1.0), optax.sgd(0.0))
    updates, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    assert float(updates["autoencoder"]["w"][0]) == -1.0
    assert float(updates["discriminator"]["w"][0]) == 0.0
