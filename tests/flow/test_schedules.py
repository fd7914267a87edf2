"""The linear-quadratic schedule's closed-form properties (Movie Gen / Mochi form)."""
import numpy as np
import pytest

from mgen_jax.flow.schedules import linear_quadratic_schedule, linear_schedule, make_schedule


def test_worked_values_for_50_steps_approximating_250():
    t = linear_quadratic_schedule(50, 250)
    assert t.shape == (51,)
    np.testing.assert_allclose(t[:26], np.arange(26) * 0.004, atol=1e-12)  # linear part, tau=0.1
    np.testing.assert_allclose(t[[26, 27, 48, 49, 50]],
                               [0.10528, 0.11312, 0.86912, 0.93328, 1.0], atol=1e-9)


@pytest.mark.parametrize("steps, reference", [(50, 250), (50, 1000), (7, 30), (2, 10), (33, 100)])
def test_endpoints_monotone_and_smooth_join(steps, reference):
    t = linear_quadratic_schedule(steps, reference)
    lin = steps // 2
    tau = lin / reference
    assert t[0] == 0.0 and t[-1] == 1.0
    assert np.all(np.diff(t) > 0)
    assert t[lin] == pytest.approx(tau)
    # C1 join: the quadratic's slope at L equals the linear slope tau / L.
    quad = steps - lin
    d = lin - tau * steps
    a = d / (lin * quad ** 2)
    b = tau / lin - 2 * d / quad ** 2
    assert 2 * a * lin + b == pytest.approx(tau / lin)


def test_rejects_reference_not_longer_than_linear_part():
    with pytest.raises(ValueError, match="reference_steps"):
        linear_quadratic_schedule(50, 20)
    with pytest.raises(ValueError, match="sampling schedule .cosine. unknown; choose one of linear, linear_quadratic"):
        make_schedule("cosine", 10)


def test_linear_schedule():
    np.testing.assert_allclose(linear_schedule(4), [0, 0.25, 0.5, 0.75, 1.0])
