"""JAX's persistent compilation cache for `mgen` commands: a restarted job (after a preemption,
a kill, or the next stage of a sweep) loads its compiled steps from disk instead of compiling
them again — minutes per restart for the TAE on a CPU, and on TPU pods where every restart
recompiles the whole step.

The folder: $MGEN_COMPILATION_CACHE, else ~/.cache/mgen_jax/xla; `MGEN_COMPILATION_CACHE=off`
disables it; a JAX_COMPILATION_CACHE_DIR set by the user is left as JAX reads it. Entries are
keyed by the program, its shardings, the backend and the JAX version, so a stale one is never
used, only left unused."""
import os

import jax

ENV = "MGEN_COMPILATION_CACHE"
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "mgen_jax", "xla")
# Programs that compile faster than this are not worth a disk round trip.
MIN_COMPILE_SECONDS = 1.0


def enable_compilation_cache(environ=os.environ) -> str | None:
    """Point JAX at the cache folder; returns it, or None when disabled or left to JAX."""
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    folder = environ.get(ENV, DEFAULT_DIR)
    if folder.lower() in ("off", "0", "none", ""):
        return None
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
