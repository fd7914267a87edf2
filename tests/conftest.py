"""Test set-up: 8 forced CPU devices, set before jax is imported anywhere."""
import atexit
import os
import shutil
import tempfile

# Tests are bound by XLA:CPU compile time, not run time, and LLVM's optimisation passes are most
# of a compile: level 0 cuts the suite's CPU time by about a third. Matmuls and convolutions
# still run in their library kernels, and HLO-level results (fusion, remat, memory and FLOP
# analyses) do not depend on it. A level in the caller's XLA_FLAGS comes later and wins.
os.environ["XLA_FLAGS"] = (
    "--xla_backend_optimization_level=0 " + os.environ.get("XLA_FLAGS", "")
    + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The partitionable threefry (jax's default) takes XLA:CPU seconds to compile per parameter
# shape (~10 s for one 3x3x8x16 kernel, against 0.5 s): every model init in the suite paid it.
# The classic counter layout draws other numbers but the same way for any sharding, so sharded-
# versus-unsharded checks still hold. Set in the environment so `mgen` subprocesses that tests
# compare against in-process runs draw the same numbers.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
# `mgen` commands (in-process and subprocesses) keep a persistent compilation cache, by default
# in ~/.cache: a run of the suite gets its own, made by the first process (xdist's controller,
# whose environment the workers inherit) and shared by every process of the run, so timings and
# results do not depend on what earlier runs left in the user's cache.
if "MGEN_COMPILATION_CACHE" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="mgen-test-xla-")
    os.environ["MGEN_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update("jax_default_matmul_precision", "highest")
