"""Throughput of a phase's steps for the logs: samples/s, tokens/s and the MFU estimate (model
FLOPs from the analytic count, models/dit/flops.py, over the devices' peak FLOP/s).

The loop records each step's host batch (shapes only, no device work) and asks for the rates at
every log line, over the steps since the previous one: bucketed data changes the tokens and
FLOPs of a step from batch to batch, so they are summed per step, not assumed."""
import time
from typing import Callable

import jax

from mgen_jax.parallel.tpu_chips import CHIPS


def device_peak_flops(peak_flops_per_device: float = 0.0) -> float | None:
    """Peak FLOP/s of all the job's devices: the configured per-device figure, else the TPU
    generation's bf16 peak by device kind, else None (no MFU is logged)."""
    per_device = peak_flops_per_device
    if per_device <= 0:
        kind = jax.devices()[0].device_kind
        per_device = next((c.peak_bf16_flops for c in CHIPS.values() if c.device_kind == kind), 0)
    return per_device * jax.device_count() if per_device > 0 else None


class Throughput:
    def __init__(self, *, samples: Callable[[dict], int],
                 tokens: Callable[[dict], int] | None = None,
                 flops: Callable[[dict], float] | None = None, peak_flops: float | None = None):
        """samples/tokens/flops(host batch) -> that step's global count (this process's rows
        x the process count); peak_flops: device_peak_flops()."""
        self._fns = {"samples": samples, "tokens": tokens, "flops": flops}
        self.peak_flops = peak_flops
        self._totals = dict.fromkeys(self._fns, 0.0)
        self._since = time.perf_counter()

    def record(self, batch: dict) -> None:
        for name, fn in self._fns.items():
            if fn is not None:
                self._totals[name] += fn(batch)

    def rates(self) -> dict:
        """Rates since the previous call: samples_per_sec, tokens_per_sec, and mfu when both the
        FLOP count and the peak are known."""
        now = time.perf_counter()
        seconds = max(now - self._since, 1e-9)
        out = {"samples_per_sec": self._totals["samples"] / seconds}
        if self._fns["tokens"] is not None:
            out["tokens_per_sec"] = self._totals["tokens"] / seconds
        if self._fns["flops"] is not None and self.peak_flops:
            out["mfu"] = self._totals["flops"] / seconds / self.peak_flops
        self._totals = dict.fromkeys(self._fns, 0.0)
        self._since = now
        return out
