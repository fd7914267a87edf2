"""Flow-matching path, target, t-sampling, Euler transport and CFG."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.flow.guidance import guided_velocity
from mgen_jax.flow.loss import flow_matching_loss
from mgen_jax.flow.path import interpolate, sample_logit_normal, velocity_target
from mgen_jax.flow.samplers import euler_sample
from mgen_jax.flow.schedules import linear_quadratic_schedule, linear_schedule

SIGMA = 1e-5


def test_path_endpoints_and_velocity_is_time_derivative():
    k0, k1 = jax.random.split(jax.random.key(0))
    x0, x1 = jax.random.normal(k0, (3, 5)), jax.random.normal(k1, (3, 5)) + 2.0
    np.testing.assert_allclose(interpolate(x0, x1, jnp.zeros(3), SIGMA), x0, rtol=1e-6)
    np.testing.assert_allclose(interpolate(x0, x1, jnp.ones(3), SIGMA), x1 + SIGMA * x0, rtol=1e-5)
    t, h = jnp.full((3,), 0.3), 1e-2
    fd = (interpolate(x0, x1, t + h, SIGMA) - interpolate(x0, x1, t - h, SIGMA)) / (2 * h)
    np.testing.assert_allclose(fd, velocity_target(x0, x1, SIGMA), rtol=1e-3, atol=1e-3)


def test_logit_normal_t():
    t = sample_logit_normal(jax.random.key(1), (20000,))
    assert float(t.min()) > 0 and float(t.max()) < 1
    logits = np.log(np.asarray(t) / (1 - np.asarray(t)))
    assert abs(logits.mean()) < 0.03 and abs(logits.std() - 1) < 0.03


def _gaussian_velocity(mu, s):
    """Exact marginal velocity of the path when x1 ~ N(mu, s^2) and x0 ~ N(0, 1)."""
    def m(t):
        return t * mu

    def v(t):
        return t ** 2 * s ** 2 + (1 - (1 - SIGMA) * t) ** 2

    def dv(t):
        return 2 * t * s ** 2 - 2 * (1 - SIGMA) * (1 - (1 - SIGMA) * t)

    def fn(x, t):
        t = t[:, None]
        return mu + dv(t) / (2 * v(t)) * (x - m(t))
    return fn, v


@pytest.mark.parametrize("schedule", ["linear", "linear_quadratic"])
def test_euler_transports_gaussian_to_gaussian(schedule):
    mu, s = 1.5, 0.4
    fn, v = _gaussian_velocity(mu, s)
    x0 = jax.random.normal(jax.random.key(2), (4096, 3))
    ts = linear_schedule(2000) if schedule == "linear" else linear_quadratic_schedule(2000, 4000)
    x1 = euler_sample(fn, x0, ts)
    # The flow is affine: each sample lands exactly at mu + sqrt(v(1)/v(0)) * x0; Euler is first
    # order, so its error is bounded by a small multiple of the largest step.
    expected = mu + np.sqrt(v(1.0) / v(0.0)) * np.asarray(x0)
    np.testing.assert_allclose(np.asarray(x1), expected, atol=4 * np.max(np.diff(ts)))
    assert abs(float(x1.mean()) - mu) < 0.03 and abs(float(x1.std()) - s) < 0.02


def test_cfg_combines_conditional_and_unconditional():
    def model_fn(x, t, text):
        return x * text["w"][:, None] + t[:, None]

    x, t = jnp.ones((2, 3)), jnp.array([0.1, 0.2])
    cond, uncond = {"w": jnp.array([3.0, 3.0])}, {"w": jnp.array([1.0, 1.0])}
    v = guided_velocity(model_fn, cond, uncond, 2.5)(x, t)
    expected = jnp.broadcast_to((1 + t[:, None]) + 2.5 * ((3 + t[:, None]) - (1 + t[:, None])), (2, 3))
    np.testing.assert_allclose(v, expected, rtol=1e-6)
    np.testing.assert_allclose(guided_velocity(model_fn, cond, uncond, 1.0)(x, t),
                               model_fn(x, t, cond), rtol=1e-6)


def test_loss_is_zero_for_the_exact_velocity_and_positive_otherwise():
    x1 = jax.random.normal(jax.random.key(3), (5, 4)) + 1.0
    key = jax.random.key(4)
    k_t, k_noise = jax.random.split(key)
    x0 = jax.random.normal(k_noise, x1.shape)

    def oracle(x_t, t):  # recover x0 from x_t using the known x1
        return velocity_target((x_t - t[:, None] * x1) / (1 - (1 - SIGMA) * t[:, None]), x1, SIGMA)

    loss, _ = flow_matching_loss(oracle, x1, key, sigma_min=SIGMA)
    assert float(loss) < 1e-8
    loss_zero, aux = flow_matching_loss(lambda x, t: jnp.zeros_like(x), x1, key, sigma_min=SIGMA)
    np.testing.assert_allclose(loss_zero, jnp.mean(jnp.square(velocity_target(x0, x1, SIGMA))),
                               rtol=1e-5)
    assert aux["t"].shape == (5,)
