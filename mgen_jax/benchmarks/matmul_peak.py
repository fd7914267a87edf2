"""The same-process matmul peak: the denominator every `mgen bench` step is compared against.

A jit'ed `a @ b` of square float32 matrices is timed at a few sizes (warm-up, `block_until_ready`,
median of repeats) and the best size's FLOP/s (2·n³ per product) is the peak. Comparing a model
step with this number measured in the same process, on the same device, at the same time, makes
the ratio meaningful on any machine (and robust to a busy one in a way absolute times are not).

    python -m mgen_jax.benchmarks.matmul_peak
"""
import json
import os
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp


def median_seconds(fn: Callable[[], object], *, repeats: int, warmup: int = 1) -> dict:
    """Run fn() warmup times, then `repeats` times, each to completion (block_until_ready on its
    result); return {"median", "min", "max", "all"} wall seconds of the timed runs and
    "cpu_median": the median process CPU seconds (all threads, user + system) of a run, which
    other processes on a busy machine disturb far less than wall time."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, cpu = [], []
    for _ in range(repeats):
        cpu_start, start = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return {"median": statistics.median(times), "min": min(times), "max": max(times),
            "all": times, "cpu_median": statistics.median(cpu)}


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity set; all of them where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def step_time_fields(timing: dict, *, steps: int, warmup: int) -> dict:
    """A train-step bench's timing fields from `median_seconds`' result (ours and the peer's)."""
    return {"step_seconds": timing["median"], "step_seconds_min": timing["min"],
            "step_seconds_max": timing["max"], "step_seconds_all": timing["all"],
            "step_cpu_seconds": timing["cpu_median"], "steps_timed": steps,
            "warmup_steps": warmup}


def matmul_peak(sizes=(1024, 2048), *, repeats: int = 7, dtype=jnp.float32,
                device=None) -> dict:
    """FLOP/s of `a @ b` ([n, n] x [n, n]) at each size; the best median is the peak."""
    device = jax.devices()[0] if device is None else device
    matmul = jax.jit(lambda a, b: a @ b)
    rows = []
    for n in sizes:
        ka, kb = jax.random.split(jax.random.key(n))
        a = jax.device_put(jax.random.normal(ka, (n, n), dtype), device)
        b = jax.device_put(jax.random.normal(kb, (n, n), dtype), device)
        t = median_seconds(lambda: matmul(a, b), repeats=repeats, warmup=2)
        flops = 2.0 * n ** 3
        rows.append({"n": n, "flops": flops, "seconds": t["median"], "seconds_min": t["min"],
                     "flops_per_s": flops / t["median"], "cpu_seconds": t["cpu_median"],
                     "flops_per_cpu_s": flops / t["cpu_median"]})
    best = max(rows, key=lambda r: r["flops_per_s"])
    return {"dtype": jnp.dtype(dtype).name, "repeats": repeats, "sizes": rows,
            "best_n": best["n"], "flops_per_s": best["flops_per_s"],
            "flops_per_cpu_s": max(r["flops_per_cpu_s"] for r in rows)}


def machine_info() -> dict:
    """Where the numbers were taken: enough to tell two runs' machines apart."""
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    device = jax.devices()[0]
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "cpu_model": cpu_model,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def _jaxlib_version():
    try:
        import jaxlib
        return jaxlib.__version__
    except (ImportError, AttributeError):
        return None


if __name__ == "__main__":
    print(json.dumps({"machine": machine_info(), "matmul_peak": matmul_peak()}, indent=2))
