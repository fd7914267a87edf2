"""Throughput and MFU of the logged steps (training/throughput.py) and the step-range profiler's
checks (training/profiling.py)."""
import jax
import numpy as np
import pytest

from mgen_jax.parallel.tpu_chips import CHIPS
from mgen_jax.training import profiling, throughput
from mgen_jax.training.profiling import StepProfiler
from mgen_jax.training.throughput import Throughput, device_peak_flops


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_rates_are_per_window_and_sum_each_batch_own_counts(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(throughput.time, "perf_counter", clock)
    meter = Throughput(samples=len, tokens=lambda b: 10 * len(b), flops=lambda b: 1e6 * len(b),
                       peak_flops=4e6)
    for batch in ([0] * 2, [0] * 3):  # two steps of different sizes (buckets)
        meter.record(batch)
    clock.now += 2.0
    assert meter.rates() == pytest.approx({"samples_per_sec": 2.5, "tokens_per_sec": 25.0,
                                           "mfu": 5e6 / 2.0 / 4e6})
    meter.record([0])
    clock.now += 0.5
    assert meter.rates() == pytest.approx({"samples_per_sec": 2.0, "tokens_per_sec": 20.0,
                                           "mfu": 1e6 / 0.5 / 4e6})


def test_no_mfu_without_a_peak_or_a_flop_count():
    assert set(Throughput(samples=len, peak_flops=None, flops=len).rates()) == {"samples_per_sec"}
    assert "mfu" not in Throughput(samples=len, peak_flops=1e12).rates()


def test_peak_from_config_else_tpu_generation_else_none(monkeypatch):
    assert device_peak_flops(2e9) == 2e9 * jax.device_count()
    assert device_peak_flops() is None  # CPU: not a generation the table knows

    class _Device:
        device_kind = CHIPS["v5p"].device_kind
    monkeypatch.setattr(throughput.jax, "devices", lambda: [_Device()])
    assert device_peak_flops() == CHIPS["v5p"].peak_bf16_flops * jax.device_count()


@pytest.mark.parametrize("steps", [(0, 2), (3, 2), (1, 2, 3)])
def test_profile_range_is_checked(steps):
    with pytest.raises(ValueError, match="profile_steps"):
        StepProfiler(steps, "/tmp/never")


def test_trace_covers_the_range(monkeypatch, tmp_path):
    """The trace starts before step `first` and stops once step `last` has run. jax.profiler is
    recorded here: starting a real trace inside a pytest worker that already ran other tests
    crashed the worker once (a segfault in start_trace); the real trace file is checked through
    `mgen train` in a fresh process (tests/training/test_preemption.py, slow)."""
    calls = []
    monkeypatch.setattr(profiling.jax.profiler, "start_trace", lambda d: calls.append(("start", d)))
    monkeypatch.setattr(profiling.jax.profiler, "stop_trace", lambda: calls.append(("stop",)))
    profiler = StepProfiler((2, 3), str(tmp_path / "profile"))
    x = jax.numpy.ones(3)
    for number in range(1, 5):
        with profiler.step(number, "dit"):
            x = x * 2
            calls.append(("step", number, profiler.active))
        profiler.after(number, x)
    assert calls == [("step", 1, False), ("start", str(tmp_path / "profile")), ("step", 2, True),
                     ("step", 3, True), ("stop",), ("step", 4, False)]
    np.testing.assert_array_equal(x, 16.0)
