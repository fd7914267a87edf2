"""`mgen average` end to end on trained workdirs: a tiny quickstart run checkpoints its DiT at
steps 2 and 4; a copy of its workdir is the second run. Averaging the first at step 2 with the
second's newest (4) writes a workdir whose DiT is the weighted mean, which `mgen eval` takes."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding

from mgen_jax.checkpointing.averaging import key_names, restore_leaves, saved_tree

# A whole `mgen train` (TAE, latents, DiT), the average and `mgen eval` in subprocesses.
pytestmark = pytest.mark.slow

TRAIN = ["train", "--config=experiments/quickstart.py:smoke", "--no-progress", "--skip-eval",
         "--config.tae_train.steps=2", "--config.dit_train.steps=4",
         "--config.dit_train.checkpoint_every=2", "--config.data.num_clips=32",
         "--config.eval.sample_steps=2"]


def _mgen(*args):
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}  # one CPU device
    return subprocess.run([sys.executable, "-m", "mgen_jax.cli", *args], env=env,
                          capture_output=True, text=True, timeout=900)


def _dit_params(workdir, step) -> dict:
    """{key names: array} of a DiT checkpoint's params, restored onto one device."""
    directory, device = f"{workdir}/checkpoints/dit", SingleDeviceSharding(jax.devices()[0])
    flat, _ = jax.tree_util.tree_flatten_with_path(saved_tree(directory, step))
    return restore_leaves(directory, step, {
        key_names(p): jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device)
        for p, m in flat if key_names(p)[0] == "params"})


def test_average_of_two_trained_runs_is_evaluated(tmp_path):
    first, second, out = tmp_path / "run1", tmp_path / "run2", tmp_path / "averaged"
    proc = _mgen(*TRAIN, f"--workdir={first}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    shutil.copytree(first, second)

    proc = _mgen("average", f"--out={out}", f"{first}@2", str(second), "--weights=1,3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert [(s["step"], s["weight"], s["params"]) for s in record["sources"]] == [
        (2, 0.25, "params"), (4, 0.75, "params")]
    assert json.loads((out / "average.json").read_text())["weights"] == [0.25, 0.75]
    a, b, mean = _dit_params(first, 2), _dit_params(second, 4), _dit_params(out, 2)
    assert sorted(a) == sorted(b) == sorted(mean) and len(a) > 10
    leaves = [(np.asarray(a[n]), np.asarray(b[n]), np.asarray(mean[n])) for n in sorted(a)]
    assert any(not np.array_equal(x, y) for x, y, _ in leaves)  # two steps apart: different
    for x, y, m in leaves:
        np.testing.assert_allclose(m, 0.25 * x + 0.75 * y, rtol=1e-6, atol=1e-7)

    proc = _mgen("eval", f"--workdir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert set(report["accuracy"]) == {"colour", "shape", "direction", "all"}
    assert report["count"] == 12 and (out / "eval" / report["samples"][0]["file"]).exists()

    proc = _mgen("average", f"--out={out}", f"{first}@2", str(second))  # other weights
    assert proc.returncode != 0 and "holds a different average" in proc.stderr
