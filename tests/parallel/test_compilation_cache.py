"""The persistent compilation cache `mgen` turns on (parallel/compilation_cache.py)."""
import jax
import pytest

from mgen_jax.parallel import compilation_cache


@pytest.fixture
def restore_config():
    before = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
    yield
    jax.config.update("jax_compilation_cache_dir", before[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", before[1])


def test_folder_from_environment_default_and_off(restore_config, tmp_path):
    assert compilation_cache.enable_compilation_cache({"MGEN_COMPILATION_CACHE": "off"}) is None
    assert compilation_cache.enable_compilation_cache(
        {"JAX_COMPILATION_CACHE_DIR": str(tmp_path)}) is None  # the user's own JAX setting
    assert compilation_cache.enable_compilation_cache({}) == compilation_cache.DEFAULT_DIR
    folder = str(tmp_path / "xla")
    assert compilation_cache.enable_compilation_cache({"MGEN_COMPILATION_CACHE": folder}) == folder
    assert jax.config.jax_compilation_cache_dir == folder


@pytest.mark.slow  # two Python processes importing jax (~15 s)
def test_a_compiled_program_is_written_and_found_by_the_next_process(tmp_path):
    import os
    import subprocess
    import sys
    script = (
        "import jax, jax.numpy as jnp\n"
        "from mgen_jax.parallel import compilation_cache as cc\n"
        "cc.MIN_COMPILE_SECONDS = 0\n"
        "cc.enable_compilation_cache()\n"
        "hits = []\n"
        "jax.monitoring.register_event_listener(\n"
        "    lambda event, **_: hits.append(event) if event.endswith('/cache_hits') else None)\n"
        "jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((8, 8))).block_until_ready()\n"
        "print('hits', len(hits))\n")
    env = dict(os.environ, MGEN_COMPILATION_CACHE=str(tmp_path / "xla"), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    seen, hits = [], []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120,
                             capture_output=True, text=True).stdout
        hits.append(int(out.split("hits")[-1]))
        seen.append(sorted(p.name for p in (tmp_path / "xla").iterdir()))
    assert any(name.startswith("jit__lambda") for name in seen[0]), seen[0]
    assert hits[0] == 0 and hits[1] == len(seen[0]) > 0, (hits, seen)
    assert seen[1] == seen[0], "the second process wrote entries of its own"
