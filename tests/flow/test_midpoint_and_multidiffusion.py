"""The midpoint solver is second order where Euler is first; multi-diffusion blends overlapping
windows by their weights, equals one whole-sequence pass for a velocity that does not look at
positions, and runs a 3x-longer sequence through the audio DiT in one scan."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.configs.registries import SAMPLERS
from mgen_jax.flow.multi_diffusion import (frame_weight_sums, multi_diffusion_sample,
                                           multi_diffusion_velocity, window_starts,
                                           window_weights)
from mgen_jax.flow.samplers import euler_sample, midpoint_sample
from mgen_jax.flow.schedules import linear_schedule
from mgen_jax.parallel.logical_rules import unsharded
from tests.models.test_audio_dit import tiny_model


def _linear_ode_error(sampler, steps):
    """dx/dt = (a + b t) x from x(0) = x0: x(1) = x0 exp(a + b / 2)."""
    a, b = -1.3, 2.1
    x0 = jnp.asarray([[0.7, -1.1, 2.0]])
    x1 = sampler(lambda x, t: (a + b * t[:, None]) * x, x0, linear_schedule(steps))
    return float(jnp.max(jnp.abs(x1 - x0 * np.exp(a + b / 2))))


@pytest.mark.parametrize("sampler, factor", [(euler_sample, 2.0), (midpoint_sample, 4.0)])
def test_error_falls_by_two_to_the_order_when_steps_double(sampler, factor):
    errors = [_linear_ode_error(sampler, steps) for steps in (8, 16, 32)]
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < coarse
        assert 0.85 * factor < coarse / fine < 1.15 * factor, errors


def test_midpoint_is_registered_and_uses_the_half_step_velocity():
    assert SAMPLERS.load("midpoint") is midpoint_sample
    seen = []

    def velocity(x, t):
        seen.append(t)
        return jnp.ones_like(x) * t[:, None]

    # One step over [0.2, 0.6]: v(x, 0.2) for the half step, then v at t = 0.4 for the full one.
    out = midpoint_sample(velocity, jnp.zeros((2, 3)), [0.2, 0.6])
    np.testing.assert_allclose(out, 0.4 * 0.4, rtol=1e-6)
    assert len(seen) == 2  # traced once in the scan body: two evaluations per step


def test_windows_cover_the_sequence_and_weights_normalise():
    starts = window_starts(50, 16, 6)
    assert starts[0] == 0 and starts[-1] == 50 - 16 and np.all(np.diff(starts) <= 6)
    assert list(window_starts(10, 16, 6)) == [0]
    with pytest.raises(ValueError, match="stride"):
        window_starts(50, 16, 17)
    tri, uni = window_weights(16, "triangular"), window_weights(16, "uniform")
    np.testing.assert_allclose(tri, tri[::-1])           # symmetric
    assert tri.min() > 0 and tri.argmax() in (7, 8) and tri.max() <= 1
    np.testing.assert_array_equal(uni, 1.0)
    sums = frame_weight_sums(50, 16, 6, "uniform")
    coverage = np.zeros(50)
    for s in starts:
        coverage[s:s + 16] += 1
    np.testing.assert_array_equal(sums, coverage)         # uniform: windows per frame
    assert frame_weight_sums(50, 16, 6).min() > 0
    # A velocity of ones blends to ones whatever the weights.
    for weighting in ("triangular", "uniform"):
        fn = multi_diffusion_velocity(lambda x, t, f, s: jnp.ones_like(x), 50, window=16,
                                      stride=6, weighting=weighting)
        np.testing.assert_allclose(fn(jnp.zeros((2, 50, 3)), jnp.zeros(2), {}, {}), 1.0,
                                   rtol=1e-6)


def _reference_blend(values, length, window, stride, weighting):
    """NumPy: every window contributes values[k] (k = position in the window) with weight w[k]."""
    w = window_weights(window, weighting)
    num, den = np.zeros(length), np.zeros(length)
    for s in window_starts(length, window, stride):
        num[s:s + window] += w * values
        den[s:s + window] += w
    return num / den


@pytest.mark.parametrize("windows_in_batch", [True, False])
def test_position_dependent_velocity_blends_as_weighted_mean_and_weightings_differ(
        windows_in_batch):
    length, window, stride = 41, 12, 5
    values = np.cos(np.arange(window) * 0.7)  # what the "model" says at each window position

    def velocity(x, t, frames, shared):
        return jnp.broadcast_to(jnp.asarray(values, jnp.float32)[None, :, None], x.shape)

    out = {}
    for weighting in ("triangular", "uniform"):
        fn = multi_diffusion_velocity(velocity, length, window=window, stride=stride,
                                      weighting=weighting, windows_in_batch=windows_in_batch)
        out[weighting] = np.asarray(fn(jnp.zeros((2, length, 3)), jnp.zeros(2), {}, {}))
        expected = _reference_blend(values, length, window, stride, weighting)
        np.testing.assert_allclose(out[weighting], np.broadcast_to(expected[None, :, None],
                                                                   (2, length, 3)), rtol=1e-5)
    assert np.max(np.abs(out["triangular"] - out["uniform"])) > 0.05


def _pointwise_velocity(x, t, frames, shared):
    """Looks at each frame alone (no positions, no neighbours): windows cannot change it."""
    return -x * (1.0 + t[:, None, None]) + frames["c"] * shared["s"][:, None, None]


@pytest.mark.parametrize("weighting", ["triangular", "uniform"])
@pytest.mark.parametrize("sampler", ["euler", "midpoint"])
def test_position_independent_velocity_equals_the_single_window_result(weighting, sampler):
    b, length, c = 2, 3 * 16 + 5, 3
    ks = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(ks[0], (b, length, c))
    frames = {"c": jax.random.normal(ks[1], (b, length, c))}
    shared = {"s": jax.random.normal(ks[2], (b,))}
    ts = linear_schedule(6)
    whole = SAMPLERS.load(sampler)(lambda x, t: _pointwise_velocity(x, t, frames, shared), x0, ts)
    for in_batch in (True, False):
        multi = jax.jit(lambda x: multi_diffusion_sample(
            _pointwise_velocity, x, ts, frames, shared, window=16, stride=7,
            weighting=weighting, sampler=sampler, windows_in_batch=in_batch))(x0)
        np.testing.assert_allclose(multi, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # compile-heavy: CI runs it with the slow tests
def test_audio_dit_generates_three_windows_of_audio_in_one_scan():
    window, steps = 16, 3
    _, pure, state = tiny_model()  # its position table holds 16 frames
    b, length = 2, 3 * window
    ks = jax.random.split(jax.random.key(2), 4)
    x0 = jax.random.normal(ks[0], (b, length, 5))
    frames = {"video": jax.random.normal(ks[1], (b, length, 7)),
              "context": jax.random.normal(ks[2], (b, length, 5)),
              "mask": (jnp.arange(length) < 10).astype(jnp.float32)[None, :, None]
              * jnp.ones((b, 1, 1))}  # extension: the first 10 frames known
    shared = {"text": jax.random.normal(ks[3], (b, 4, 9)), "text_mask": jnp.ones((b, 4), bool)}
    ts = linear_schedule(steps)

    def velocity(state, x, t, f, s):
        m = pure.bind(state)
        return m(x, t, {"t5": s["text"]}, {"t5": s["text_mask"]}, video=f["video"],
                 context=f["context"], context_mask=f["mask"])

    def sample(state, x0, frames, shared):
        with unsharded():
            return multi_diffusion_sample(lambda *a: velocity(state, *a), x0, ts, frames, shared,
                                          window=window, stride=window // 2, sampler="midpoint")

    jaxpr = jax.make_jaxpr(sample)(state, x0, frames, shared)
    top_scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(top_scans) == 1 and top_scans[0].params["length"] == steps  # one loop over steps
    out = jax.jit(sample)(state, x0, frames, shared)
    assert out.shape == (b, length, 5) and bool(jnp.all(jnp.isfinite(out)))
    # The model's position table holds one window (16 frames), not the whole sequence.
    with pytest.raises(ValueError, match="max_frames"):
        with unsharded():
            velocity(state, x0, jnp.zeros(b), frames, shared)
    # Windows that do not overlap (stride = window) are sampled independently: each one equals
    # plain sampling of that window alone (here the three windows as one batch of 3B).
    per_window = lambda a: jnp.moveaxis(a.reshape(b, 3, window, *a.shape[2:]), 1, 0).reshape(
        3 * b, window, *a.shape[2:])
    tiled = jax.tree.map(lambda a: jnp.concatenate([a] * 3, axis=0), shared)

    @jax.jit
    def direct(state):
        with unsharded():
            return euler_sample(lambda x, t: velocity(
                state, x, t, jax.tree.map(per_window, frames), tiled), per_window(x0), ts)

    @jax.jit
    def abutting(state):
        with unsharded():
            return multi_diffusion_sample(lambda *a: velocity(state, *a), x0, ts, frames, shared,
                                          window=window, stride=window, sampler="euler")

    expected = jnp.moveaxis(direct(state).reshape(3, b, window, 5), 0, 1).reshape(b, length, 5)
    np.testing.assert_allclose(abutting(state), expected, rtol=1e-5, atol=1e-6)
