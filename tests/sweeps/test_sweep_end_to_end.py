"""The shipped CFG-scale sweep through `mgen sweep`, for real (subprocesses of `mgen train` and
`mgen eval`) on a shrunken quickstart: the base trained once, the scale's run evaluated into its
own folder, the table and PNGs written; re-invoked, the finished run and the base are not run
again."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compile_flags import FAST_COMPILE

REPO = Path(__file__).resolve().parents[2]
# The smoke quickstart, smaller still: compile time is most of what is left.
SHRINK = ["--sweep.base=experiments/quickstart.py:smoke", "--sweep.axes.eval.guidance_scale=(3.0,)",
          "--config.data.num_clips=32", "--config.tae_train.steps=2", "--config.dit_train.steps=2",
          "--config.eval.sample_steps=2"]

pytestmark = pytest.mark.slow  # a TAE + DiT training and an evaluation: minutes on 2 cores


def _sweep(out):
    # One CPU device, as a laptop, compiling fast (tests/compile_flags.py).
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "mgen_jax.cli", "sweep",
                           "--sweep=experiments/sweeps/cfg_scale.py", f"--out={out}", *SHRINK],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_cfg_sweep_end_to_end_and_resumed(tmp_path):
    out = tmp_path / "sweep"
    proc = _sweep(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = out / "guidance_scale-3.0"
    report = json.loads((run / "eval.json").read_text())
    assert report["guidance_scale"] == 3.0 and report["sample_steps"] == 2
    assert (run / "eval" / "contact_sheet.png").exists()
    assert not (out / "base" / "eval.json").exists()  # the base is trained, never evaluated
    assert os.path.realpath(run / "checkpoints") == str((out / "base" / "checkpoints").resolve())
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["run"] == "guidance_scale-3.0"
    assert rows[0]["eval.guidance_scale"] == "3.0" and rows[0]["status"] == "done"
    for key in ("all", "colour", "shape", "direction"):
        assert float(rows[0][f"eval/accuracy.{key}"]) == report["accuracy"][key]
    table = (out / "results.md").read_text().splitlines()
    assert len(table) == 3 and table[2].startswith("| guidance_scale-3.0 | 3.0 |")
    for png in ("eval_accuracy.all.png", "eval_accuracy.direction.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(proc.stdout[proc.stdout.rindex("\n{") + 1:])
    assert summary["runs"] == {"guidance_scale-3.0": "done"}

    # Re-invoked (as after a kill): the finished run is skipped and nothing is started.
    stamp = (run / "eval.json").stat().st_mtime_ns
    logs = {p: p.read_text() for p in (out / "base" / "sweep.log", run / "sweep.log")}
    again = _sweep(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[sweep] guidance_scale-3.0: finished before, skipped" in again.stdout
    assert "[sweep] base" not in again.stdout
    assert (run / "eval.json").stat().st_mtime_ns == stamp
    assert {p: p.read_text() for p in logs} == logs  # no subprocess wrote a line
