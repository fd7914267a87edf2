"""Sampling schedules, checked against Movie Gen's definition rather than the implementation's formula.

Paper (Polyak et al. 2024, sec. 3.1.3; /work/shared/reference/moviegen_spec.md sec. 3.3): for N sampling steps
and an R-step reference linear schedule, the first L = N//2 steps are the first L steps of the R-step linear
schedule, t_i = i / R, and the remaining Q = N - L steps follow a quadratic reaching t_N = 1, joined with a
continuous slope.  Written around the join, the quadratic part is

    t_i = L/R + (i - L)/R + k (i - L)^2            (L <= i <= N)

which already satisfies t_L = L/R and t'(L) = 1/R (the linear slope); t_N = 1 then fixes

    k = (1 - N/R) / Q^2.

In finite differences: the backward difference t_L - t_{L-1} is 1/R, the forward difference t_{L+1} - t_L
is 1/R + k, and every second difference of the quadratic part is 2k.  A slope jump at the join shows up as
forward - backward != (second difference) / 2.
"""
import numpy as np
import pytest

from mgen_jax.flow.schedules import linear_quadratic_schedule, linear_schedule, make_schedule

EXACT = 1e-15  # "exact" up to one rounding of i/R (the grid is computed in float64)


def _expected_linear_quadratic(steps: int, reference: int) -> np.ndarray:
    """The paper's definition, written independently of mgen_jax/flow/schedules.py."""
    lin, quad = steps // 2, steps - steps // 2
    k = (1.0 - steps / reference) / quad ** 2
    i = np.arange(steps + 1, dtype=np.float64)
    j = i - lin
    return np.where(i <= lin, i / reference, lin / reference + j / reference + k * j ** 2)


def test_paper_setting_50_steps_of_250():
    t = linear_quadratic_schedule(50, 250)
    assert t.shape == (51,)
    # (a) the first 25 steps are the first 25 steps of a 250-step linear schedule: t_i = i / 250, t_25 = 0.1.
    np.testing.assert_allclose(t[:26], np.arange(26) / 250, rtol=0, atol=EXACT)
    assert t[25] == pytest.approx(0.1, abs=EXACT)
    # Quadratic part: k = (1 - 50/250) / 25^2 = 0.00128, so t_26 = 0.1 + 0.004 + 0.00128, ...
    k = 0.8 / 625
    np.testing.assert_allclose(t[[26, 27, 48, 49, 50]],
                               [0.10528, 0.11312, 0.1 + 23 * 0.004 + 529 * k, 0.1 + 24 * 0.004 + 576 * k, 1.0],
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(t[[48, 49]], [0.86912, 0.93328], rtol=0, atol=1e-12)  # spec's worked values


@pytest.mark.parametrize("steps, reference", [(50, 250), (50, 1000), (7, 30), (9, 100), (2, 10), (33, 100)])
def test_matches_paper_definition(steps, reference):
    t = linear_quadratic_schedule(steps, reference)
    lin, quad = steps // 2, steps - steps // 2
    k = (1.0 - steps / reference) / quad ** 2  # derived from t_L, t'(L), t_N = 1 (module docstring)
    assert t.shape == (steps + 1,)
    # (a) linear part: t_i = i / R for every i <= L (an off-by-one, e.g. i/(R-1) or linspace(0, L/R, L),
    # moves t_1 by far more than the tolerance).
    np.testing.assert_allclose(t[:lin + 1], np.arange(lin + 1) / reference, rtol=0, atol=EXACT)
    # (b) continuous slope at the join, by finite differences.
    backward = t[lin] - t[lin - 1] if lin >= 1 else None
    if backward is not None:
        assert backward == pytest.approx(1.0 / reference, rel=1e-9)
    if quad >= 2:
        second = np.diff(t[lin:], n=2)
        np.testing.assert_allclose(second, 2 * k, rtol=1e-6, atol=1e-13)  # constant = 2a
        forward = t[lin + 1] - t[lin]
        # forward - backward = (second difference)/2 for a C1 join; a slope jump s' - 1/R adds to the left.
        assert forward - 1.0 / reference == pytest.approx(second[0] / 2, rel=1e-6, abs=1e-13)
        assert forward == pytest.approx(1.0 / reference + k, rel=1e-9)
    # (c) endpoints and monotonicity.
    assert t[0] == 0.0 and t[-1] == 1.0
    assert np.all(np.diff(t) > 0)
    np.testing.assert_allclose(t, _expected_linear_quadratic(steps, reference), rtol=0, atol=1e-12)


@pytest.mark.parametrize("steps, reference", [(7, 30), (9, 100), (51, 250)])
def test_odd_step_counts(steps, reference):
    """(d) odd N: L = N//2 linear steps, Q = L + 1 quadratic steps."""
    t = linear_quadratic_schedule(steps, reference)
    lin = steps // 2
    assert steps - lin == lin + 1
    np.testing.assert_allclose(t[:lin + 1], np.arange(lin + 1) / reference, rtol=0, atol=EXACT)
    # The last linear point is still t_L = L/R, and the next step is already on the quadratic:
    k = (1.0 - steps / reference) / (lin + 1) ** 2
    assert t[lin + 1] == pytest.approx((lin + 1) / reference + k, rel=1e-9)
    assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)
    np.testing.assert_allclose(t, _expected_linear_quadratic(steps, reference), rtol=0, atol=1e-12)


def test_rejects_reference_not_longer_than_linear_part():
    with pytest.raises(ValueError, match="reference_steps"):
        linear_quadratic_schedule(50, 20)
    with pytest.raises(ValueError, match="sampling schedule .cosine. unknown; choose one of linear, linear_quadratic"):
        make_schedule("cosine", 10)


@pytest.mark.parametrize("steps", [1, 4, 7, 50])
def test_linear_schedule(steps):
    """(e) uniform grid t_i = i / N."""
    expected = np.arange(steps + 1) / steps
    np.testing.assert_allclose(linear_schedule(steps), expected, rtol=0, atol=EXACT)
    np.testing.assert_allclose(make_schedule("linear", steps), expected, rtol=0, atol=EXACT)
    np.testing.assert_allclose(linear_schedule(4), [0, 0.25, 0.5, 0.75, 1.0], rtol=0, atol=0)


def test_make_schedule_dispatches_linear_quadratic():
    np.testing.assert_allclose(make_schedule("linear_quadratic", 50, 250),
                               _expected_linear_quadratic(50, 250), rtol=0, atol=1e-12)


def test_a_reference_shorter_than_the_steps_is_refused_not_overshooting():
    """With reference_steps < steps the quadratic part would rise above t = 1 and come back
    (N=50, R=30 peaks at 1.09); the schedule refuses instead."""
    with pytest.raises(ValueError, match="reference_steps=30 must be >= steps=50"):
        linear_quadratic_schedule(50, 30)
    t = linear_quadratic_schedule(50, 50)
    assert np.all(np.diff(t) > 0) and t.max() == 1.0
