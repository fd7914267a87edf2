"""The quickstart job end to end through the `mgen` command, at smoke size: train (TAE, latents,
DiT), evaluate held-out prompts, sample a prompt to a playable mp4, resume exactly after a
kill -9, and average two checkpoints of the run with `mgen average`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jax.sharding import SingleDeviceSharding

from mgen_jax.checkpointing.averaging import key_names, restore_leaves, saved_tree
from mgen_jax.inference.video_io import read_mp4

SMOKE = "experiments/quickstart.py:smoke"


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one CPU device, as a user's laptop run
    env["JAX_PLATFORMS"] = "cpu"
    return env


# Whole `mgen train/sample/eval` jobs in subprocesses, twice (once killed): minutes on 2 cores.
pytestmark = pytest.mark.slow


def _mgen(*args, **kw):
    return subprocess.run([sys.executable, "-m", "mgen_jax.cli", *args], env=_env(),
                          capture_output=True, text=True, timeout=900, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart") / "wd"
    proc = _mgen("train", f"--config={SMOKE}", f"--workdir={workdir}", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _dit_final_params(workdir):
    from mgen_jax.inference.loading import load_text_to_video
    return load_text_to_video(str(workdir)).params["dit"]


def test_train_writes_metrics_checkpoints_and_eval(trained):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in records} == {"tae", "dit"}
    assert all({"step", "loss"} <= set(r) for r in records)
    assert list((trained / "tensorboard" / "dit").iterdir())
    report = json.loads((trained / "eval.json").read_text())
    assert set(report["accuracy"]) == {"colour", "shape", "direction", "all"}
    assert report["count"] == len(report["held_out_combos"]) == 12
    rec = report["reconstruction"]
    assert rec["count"] == 12 and 0.0 < rec["psnr_db"] < 100.0
    assert set(rec["accuracy"]) == {"colour", "shape", "direction", "all"}
    sample = report["samples"][0]
    assert (trained / "eval" / sample["file"]).exists()
    assert (trained / "eval" / "contact_sheet.png").exists()
    assert read_mp4(trained / "eval" / sample["file"]).shape[0] == 16
    timings = json.loads((trained / "timings.json").read_text())  # the run's phase split
    assert list(timings) == ["data", "tae", "latents", "dit", "eval"]
    assert all(seconds > 0 for seconds in timings.values())


def test_sample_writes_playable_mp4(trained, tmp_path):
    out = tmp_path / "samples"
    proc = _mgen("sample", f"--workdir={trained}", "--prompt", "a green square moving up",
                 "--prompt", "a red circle moving left", f"--out={out}", "--steps=3", "--scale=2",
                 "--guidance=2.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    mapping = json.loads((out / "samples.json").read_text())
    assert set(mapping) == {"a green square moving up", "a red circle moving left"}
    video = read_mp4(out / mapping["a green square moving up"])
    assert video.shape == (16, 64, 64, 3) and video.dtype == np.uint8


def test_eval_command_rewrites_the_report(trained, tmp_path):
    out = tmp_path / "again.json"
    proc = _mgen("eval", f"--workdir={trained}", f"--out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())["accuracy"] == json.loads(
        (trained / "eval.json").read_text())["accuracy"]


def test_kill_9_then_rerun_resumes_exactly(trained, tmp_path):
    workdir = tmp_path / "wd"
    cmd = [sys.executable, "-m", "mgen_jax.cli", "train", f"--config={SMOKE}",
           f"--workdir={workdir}", "--no-progress", "--skip-eval"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_ckpt = workdir / "checkpoints" / "tae" / "2"
    deadline = time.time() + 600
    while not first_ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first_ckpt.exists()
    assert not (workdir / "checkpoints" / "dit" / "4").exists(), "the run finished before the kill"
    resumed = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stdout
    # Same final weights as the uninterrupted run, and one metrics line per logged step.
    for a, b in zip(jax.tree.leaves(_dit_final_params(trained)),
                    jax.tree.leaves(_dit_final_params(workdir))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    for phase in ("tae", "dit"):
        steps = [r["step"] for r in records if r["phase"] == phase]
        assert steps == sorted(set(steps)) and steps[-1] == 4


def _dit_params(workdir, step) -> dict:
    """{key names: array} of a DiT checkpoint's params, restored onto one device."""
    directory, device = f"{workdir}/checkpoints/dit", SingleDeviceSharding(jax.devices()[0])
    flat, _ = jax.tree_util.tree_flatten_with_path(saved_tree(directory, step))
    return restore_leaves(directory, step, {
        key_names(p): jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device)
        for p, m in flat if key_names(p)[0] == "params"})


def test_average_of_two_runs_is_evaluated(trained, tmp_path):
    """`mgen average`: the trained run at DiT step 2 with a copy of it at step 4 (weights 1:3)
    gives a workdir whose DiT is the weighted mean, which `mgen eval` takes."""
    first, second, out = trained, tmp_path / "run2", tmp_path / "averaged"
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
