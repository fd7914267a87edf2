"""Sampling time grids t_0 = 0 (noise) < ... < t_S = 1 (data)."""
import numpy as np

from mgen_jax.configs.registries import SCHEDULES


def linear_schedule(steps: int, reference_steps: int | None = None) -> np.ndarray:
    """Uniform grid (reference_steps unused: every schedule takes the same arguments)."""
    return np.linspace(0.0, 1.0, steps + 1)


def linear_quadratic_schedule(steps: int, reference_steps: int = 250) -> np.ndarray:
    """Movie Gen: the first steps//2 steps of a `reference_steps`-step linear schedule, then
    quadratically spaced steps to t = 1, joined with a continuous slope.

    With L = steps//2, Q = steps - L and tau = L / reference_steps:
      t_i = i * tau / L                    (i <= L)
      t_i = a i^2 + b i + c                (i >= L), with t_L = tau, t'_L = tau / L, t_S = 1.
    """
    if steps < 2:
        raise ValueError(f"linear-quadratic schedule needs >= 2 steps, got {steps}")
    lin = steps // 2
    quad = steps - lin
    tau = lin / reference_steps
    if reference_steps < steps:  # the quadratic would bend down and overshoot t = 1
        raise ValueError(f"linear-quadratic schedule: reference_steps={reference_steps} must be "
                         f">= steps={steps} (flow.lq_reference_steps vs the sampling steps)")
    d = lin - tau * steps
    a = d / (lin * quad ** 2)
    b = tau / lin - 2.0 * d / quad ** 2
    c = a * lin ** 2
    i = np.arange(steps + 1, dtype=np.float64)
    t = np.where(i < lin, i * tau / lin, a * i ** 2 + b * i + c)
    t[-1] = 1.0  # exact endpoint despite rounding
    return t


def make_schedule(name: str, steps: int, reference_steps: int = 250) -> np.ndarray:
    """The grid of a schedule of configs/registries.py:SCHEDULES (unknown names fail, listing
    the known ones)."""
    return SCHEDULES.load(name)(steps, reference_steps)
