"""The tiny Movie Gen recipe end to end through `mgen` (experiments/recipe_tiny.py): Shapes built
at two resolutions, the TAE, then T2I -> T2I/V (256-px stand-in) -> T2I/V (x3) -> two SFT runs ->
their average, every stage initialised from the previous stage's workdir, each stage's held-out
validation loss logged at its start (step 0) and end."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import SingleDeviceSharding

from mgen_jax.checkpointing.averaging import key_names, restore_leaves, saved_tree
from tests.compile_flags import FAST_COMPILE

RECIPE = "experiments/recipe_tiny.py"
# stage -> (data build, previous stage)
CHAIN = {"t2i": ("low", None), "t2iv": ("low", "t2i"), "t2iv_hi": ("high", "t2iv"),
         "sft": ("high", "t2iv_hi"), "sft_b": ("high", "t2iv_hi")}

pytestmark = pytest.mark.slow  # nine `mgen` jobs in subprocesses: minutes on 2 cores


def _mgen(*args):
    # One CPU device, as a laptop, compiling fast (tests/compile_flags.py).
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", *args], env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _validation(workdir) -> dict[int, float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["phase"] == "dit_val"}


def _lr(workdir) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [r["lr"] for r in map(json.loads, lines) if r["phase"] == "dit"]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    data, runs = root / "data", root / "runs"
    for build in ("low", "high"):
        _mgen("data", "build", "--source=shapes", f"--out={data / build}",
              f"--config=experiments/data_recipe_tiny.py:{build}")
    _mgen("train", f"--config={RECIPE}:tae", f"--workdir={runs / 'tae'}", "--no-progress",
          "--skip-eval", f"--config.data.dir={data / 'low'}")
    for stage, (build, previous) in CHAIN.items():
        init = [f"--config.dit_train.init_from={runs / previous}"] if previous else []
        _mgen("train", f"--config={RECIPE}:{stage}", f"--workdir={runs / stage}",
              "--no-progress", "--skip-eval", f"--config.data.dir={data / build}",
              f"--config.tae_train.init_from={runs / 'tae'}", *init)
    _mgen("average", f"--out={runs / 'average'}", str(runs / "sft"), str(runs / "sft_b"))
    _mgen("train", f"--config={RECIPE}:averaged", f"--workdir={runs / 'averaged'}",
          "--no-progress", "--skip-eval", f"--config.data.dir={data / 'high'}",
          f"--config.tae_train.init_from={runs / 'tae'}",
          f"--config.dit_train.init_from={runs / 'average'}")
    return runs


def test_every_stage_reports_its_validation_loss_at_start_and_end(recipe):
    steps = {"t2i": 60, "t2iv": 60, "t2iv_hi": 40, "sft": 30, "sft_b": 30}
    report = {}
    for stage, last in steps.items():
        val = _validation(recipe / stage)
        assert sorted(val) == sorted({0, *range(20, last + 1, 20), last}), (stage, val)
        assert all(np.isfinite(v) for v in val.values())
        report[stage] = (val[0], val[last])
    print("recipe_tiny validation loss (start -> end):",
          {s: f"{a:.4f} -> {b:.4f}" for s, (a, b) in report.items()})
    # The training stages learn on their held-out clips.
    for stage in ("t2i", "t2iv", "t2iv_hi"):
        assert report[stage][1] < report[stage][0], (stage, report[stage])
    # Averaging: one validation at step 0, no training.
    averaged = _validation(recipe / "averaged")
    assert list(averaged) == [0] and np.isfinite(averaged[0])
    print(f"averaged SFT runs: validation loss {averaged[0]:.4f}")


def test_schedules_follow_the_recipe(recipe):
    # T2I / T2I-V: constant after the warm-up; SFT: cosine decay to 0.1 x over the stage.
    assert _lr(recipe / "t2iv")[-3:] == pytest.approx([1e-3] * 3)
    sft = _lr(recipe / "sft")
    assert sft[0] > sft[-1] and sft[-1] == pytest.approx(5e-5, rel=0.2)


def _dit_params(workdir) -> dict:
    """{key names: array} of the newest DiT checkpoint's params, on one device."""
    directory = str(workdir / "checkpoints" / "dit")
    step = max(int(name) for name in os.listdir(directory) if name.isdigit())
    device = SingleDeviceSharding(jax.devices()[0])
    flat, _ = jax.tree_util.tree_flatten_with_path(saved_tree(directory, step))
    return restore_leaves(directory, step, {
        key_names(p): jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device)
        for p, m in flat if key_names(p)[0] == "params"})


def test_the_averaged_stage_starts_from_the_mean_of_the_sft_runs(recipe):
    a, b = _dit_params(recipe / "sft"), _dit_params(recipe / "sft_b")
    averaged = _dit_params(recipe / "averaged")  # its step 0: the average, taken over
    assert sorted(averaged) == sorted(a) and len(a) > 10
    assert any(not np.array_equal(a[n], b[n]) for n in a)  # two different runs
    for name in a:
        np.testing.assert_allclose(averaged[name], (np.asarray(a[name]) + b[name]) / 2,
                                   rtol=1e-6, atol=1e-7)
