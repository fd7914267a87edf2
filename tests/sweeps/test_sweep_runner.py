"""The sweep runner with a stand-in for the `mgen` subprocesses (it leaves in each folder what
`mgen train` / `mgen eval` leave, through the real config loading): runs in order, finished runs
skipped on a re-invocation, failed ones retried, the results table and PNGs; and `mgen sweep
--print-launch` through the real command line. The real subprocess path runs in
test_sweep_end_to_end.py."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.sweeps.run_metrics import loss_curve, metric_value
from mgen_jax.sweeps.runner import run_sweep
from mgen_jax.sweeps.sample_run import prepare_sample_run
from mgen_jax.sweeps.spec import SweepError, load_sweep
from mgen_jax.workdir import claim_workdir, load_workdir_config

REPO = Path(__file__).resolve().parents[2]
SMOKE = f"{REPO}/experiments/quickstart.py:smoke"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FakeMgen:
    """execute(argv, log_path) for run_sweep: what `mgen train` / `mgen eval` leave behind, fast.
    train: config.json (the real loaded config), metrics.jsonl with a dit curve (and a dit_val
    one when `val` is on), eval.json unless --skip-eval; eval: eval.json from the folder's
    config. Runs whose folder is named in `fail` exit 1 and leave nothing."""

    def __init__(self, fail=(), val=True):
        self.calls, self.fail, self.val = [], set(fail), val

    def __call__(self, argv, log_path):
        args = argv[argv.index("mgen_jax.cli") + 1:]
        self.calls.append(args)
        flags = dict(a[2:].split("=", 1) for a in args[1:] if "=" in a)
        workdir = flags["workdir"]
        if os.path.basename(workdir) in self.fail:
            return 1
        if args[0] == "train":
            overrides = [a[len("--config."):] for a in args if a.startswith("--config.")]
            cfg = load_config(flags["config"], overrides)
            claim_workdir(cfg, workdir)
            with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
                for step in (1, 2, 3):
                    f.write(json.dumps({"phase": "dit", "step": step,
                                        "loss": 10.0 / cfg.dit.width / step}) + "\n")
                    if self.val:
                        f.write(json.dumps({"phase": "dit_val", "step": step,
                                            "loss": 20.0 / cfg.dit.width / step}) + "\n")
            os.makedirs(os.path.join(workdir, "checkpoints", "dit"), exist_ok=True)
            if "--skip-eval" not in args:
                self._eval(workdir, cfg.dit.width / 1000)
        else:
            assert args[0] == "eval"
            assert os.path.islink(os.path.join(workdir, "checkpoints"))
            cfg = load_workdir_config(workdir)
            self._eval(workdir, cfg.eval.guidance_scale / 10)
        return 0

    @staticmethod
    def _eval(workdir, score):
        with open(os.path.join(workdir, "eval.json"), "w") as f:
            json.dump({"accuracy": {"all": score, "colour": 1.0}}, f)

    def runs_called(self):
        return [os.path.basename(dict(a[2:].split("=", 1) for a in c[1:] if "=" in a)["workdir"])
                for c in self.calls]


def write_sweep(tmp_path, **keys) -> str:
    given = dict(base=SMOKE, axes=dict(dit=dict(width=(64, 128, 192))),
                 metrics=("eval/accuracy.all", "dit/loss", "dit_val/loss", "eval/missing.key"))
    given.update(keys)
    path = tmp_path / "sweep.py"
    path.write_text(f"def get_sweep():\n    return {given!r}\n")
    return str(path)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_sweep_runs_tabulates_plots_and_resumes(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path), config_overrides=["dit_train.steps=3"])
    out = tmp_path / "out"
    fake = FakeMgen()
    summary = run_sweep(sweep, str(out), execute=fake, say=lambda _: None)
    names = ["width-64", "width-128", "width-192"]
    assert fake.runs_called() == names
    # Each run is a whole `mgen train` with the sweep's and its own overrides, evaluating.
    assert fake.calls[0] == ["train", f"--config={SMOKE}", "--config.dit_train.steps=3",
                             "--config.dit.width=64", f"--workdir={out}/width-64", "--no-progress"]
    assert summary["runs"] == dict.fromkeys(names, "done")
    rows = read_csv(out / "results.csv")
    assert [r["run"] for r in rows] == names
    assert list(rows[0]) == ["run", "dit.width", "eval/accuracy.all", "dit/loss", "dit_val/loss",
                             "eval/missing.key", "status"]
    assert [float(r["eval/accuracy.all"]) for r in rows] == [0.064, 0.128, 0.192]
    assert float(rows[0]["dit/loss"]) == pytest.approx(10 / 64 / 3)  # the last logged step's
    assert float(rows[2]["dit_val/loss"]) == pytest.approx(20 / 192 / 3)
    assert all(r["eval/missing.key"] == "" and r["status"] == "done" for r in rows)
    markdown = (out / "results.md").read_text().splitlines()
    assert markdown[0] == ("| run | dit.width | eval/accuracy.all | dit/loss | dit_val/loss | "
                           "eval/missing.key | status |")
    assert markdown[2].startswith("| width-64 | 64 | 0.064 | 0.05208 | 0.1042 |  | done |")
    assert len(markdown) == 2 + 3
    for png in ("eval_accuracy.all.png", "dit_loss.png", "dit_val_loss.png", "loss_curves.png"):
        assert (out / png).read_bytes()[:8] == PNG_MAGIC
    assert not (out / "eval_missing.key.png").exists()  # no values: no plot
    assert sorted(summary["files"]) == sorted(
        str(out / f) for f in ("results.csv", "results.md", "eval_accuracy.all.png",
                               "dit_loss.png", "dit_val_loss.png", "loss_curves.png"))

    # A killed sweep: one run never finished (no eval.json). Re-invoked, only it runs again.
    os.remove(out / "width-128" / "eval.json")
    again = FakeMgen()
    run_sweep(sweep, str(out), execute=again, say=lambda _: None)
    assert again.runs_called() == ["width-128"]
    rerun = FakeMgen()
    run_sweep(sweep, str(out), execute=rerun, say=lambda _: None)
    assert rerun.calls == []
    assert len(read_csv(out / "results.csv")) == 3


def test_a_finished_run_of_another_config_is_refused(tmp_path):
    out = str(tmp_path / "out")
    run_sweep(load_sweep(write_sweep(tmp_path)), out, execute=FakeMgen(), say=lambda _: None)
    changed = load_sweep(write_sweep(tmp_path), config_overrides=["dit_train.steps=3"])
    with pytest.raises(SweepError, match=r"width-64 finished with another config than this "
                                         r"sweep's \(differs in \['dit_train'\]\); use a new "):
        run_sweep(changed, out, execute=FakeMgen(), say=lambda _: None)


def test_failed_runs_are_reported_tabulated_and_retried(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    out = tmp_path / "out"
    with pytest.raises(SweepError, match=r"1 run\(s\) failed: width-128 .*re-run the same "
                                         "command to retry"):
        run_sweep(sweep, str(out), execute=FakeMgen(fail={"width-128"}), say=lambda _: None)
    rows = read_csv(out / "results.csv")
    assert [(r["run"], r["status"], r["eval/accuracy.all"]) for r in rows] == [
        ("width-64", "done", "0.064"), ("width-128", "failed", ""), ("width-192", "done", "0.192")]
    retry = FakeMgen()
    run_sweep(sweep, str(out), execute=retry, say=lambda _: None)
    assert retry.runs_called() == ["width-128"]


def test_only_runs_one_run_and_tabulates_all(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    out = tmp_path / "out"
    fake = FakeMgen()
    summary = run_sweep(sweep, str(out), only="width-128", execute=fake, say=lambda _: None)
    assert fake.runs_called() == ["width-128"]
    assert summary["runs"] == {"width-64": "not run", "width-128": "done", "width-192": "not run"}
    assert [r["status"] for r in read_csv(out / "results.csv")] == ["not run", "done", "not run"]
    with pytest.raises(SweepError, match="no run 'width-7' in this sweep; its runs: width-64, "):
        run_sweep(sweep, str(out), only="width-7", execute=fake, say=lambda _: None)


def test_sample_sweep_trains_once_and_evaluates_each_setting(tmp_path):
    sweep = load_sweep(write_sweep(
        tmp_path, mode="sample", axes=dict(eval=dict(guidance_scale=(1.0, 5.0)),
                                           flow=dict(sample_steps=(2, 3))),
        x_axis="eval.guidance_scale", metrics=("eval/accuracy.all", "dit/loss")))
    out = tmp_path / "out"
    fake = FakeMgen(val=False)
    run_sweep(sweep, str(out), execute=fake, say=lambda _: None)
    names = ["guidance_scale-1.0_sample_steps-2", "guidance_scale-1.0_sample_steps-3",
             "guidance_scale-5.0_sample_steps-2", "guidance_scale-5.0_sample_steps-3"]
    assert fake.runs_called() == ["base", *names]
    assert fake.calls[0][-2:] == ["--skip-eval", "--no-progress"]  # the base is not evaluated
    assert [c[0] for c in fake.calls[1:]] == ["eval"] * 4
    for name in names:  # its own config, the base's weights
        cfg = load_workdir_config(str(out / name))
        assert (cfg.eval.guidance_scale, cfg.flow.sample_steps) == (
            float(name[15:18]), int(name[-1]))
        assert os.readlink(out / name / "checkpoints") == str(out / "base" / "checkpoints")
    rows = read_csv(out / "results.csv")
    assert [float(r["eval/accuracy.all"]) for r in rows] == [0.1, 0.1, 0.5, 0.5]
    # Every run samples the base: its training loss in every row, one curve in the plot.
    assert len({r["dit/loss"] for r in rows}) == 1 and rows[0]["dit/loss"]
    assert (out / "eval_accuracy.all.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "loss_curves.png").read_bytes()[:8] == PNG_MAGIC
    rerun = FakeMgen()
    run_sweep(sweep, str(out), execute=rerun, say=lambda _: None)
    assert rerun.calls == []  # nothing pending: not even the base is started


def test_sample_sweep_reuses_a_given_trained_workdir(tmp_path):
    trained = tmp_path / "trained"
    FakeMgen()(["python", "-m", "mgen_jax.cli", "train", f"--config={SMOKE}",
                f"--workdir={trained}", "--skip-eval"], None)
    sweep = load_sweep(write_sweep(tmp_path, mode="sample", base_workdir=str(trained),
                                   axes=dict(eval=dict(guidance_scale=(2.0,))),
                                   overrides=("eval.seed=3",)))
    fake = FakeMgen()
    run_sweep(sweep, str(tmp_path / "out"), execute=fake, say=lambda _: None)
    assert fake.runs_called() == ["guidance_scale-2.0"]  # no base training
    cfg = load_workdir_config(str(tmp_path / "out" / "guidance_scale-2.0"))
    assert (cfg.eval.guidance_scale, cfg.eval.seed) == (2.0, 3)


def test_a_sample_run_refuses_a_base_trained_with_another_model(tmp_path):
    base = tmp_path / "base"
    claim_workdir(load_config(SMOKE), str(base))
    os.makedirs(base / "checkpoints")
    other = json.loads(load_config(SMOKE, ["dit.width=64"]).to_json_best_effort())
    with pytest.raises(SweepError, match=r"differs in \['dit.width'\]\); a sample run may only "):
        prepare_sample_run(str(base), str(tmp_path / "run"), other)
    with pytest.raises(SweepError, match="has no checkpoints: train it first"):
        prepare_sample_run(str(tmp_path / "nothing"), str(tmp_path / "run"), other)


def test_model_facts_and_logged_values_are_metrics():
    model = {"dit": {"params": 1234, "train_flops_per_token": 5.5e6}}
    lines = [{"phase": "dit", "step": 2, "loss": 0.5}, {"phase": "dit", "step": 4, "loss": 0.25}]
    assert metric_value("model/dit.params", None, lines, model) == 1234
    assert metric_value("model/dit.train_flops_per_token", None, lines, model) == 5.5e6
    assert metric_value("dit/loss", None, lines, model) == 0.25
    assert metric_value("model/dit.params", None, lines, None) is None  # not trained yet


def test_loss_curve_prefers_validation_and_falls_back_to_training():
    lines = [{"phase": "dit", "step": 2, "loss": 1.0}, {"phase": "dit", "step": 1, "loss": 2.0},
             {"phase": "tae", "step": 1, "loss": 9.0}]
    assert loss_curve(lines) == ("dit", [1, 2], [2.0, 1.0])
    lines.append({"phase": "dit_val", "step": 2, "loss": 1.5, "loss_t0.5": 1.2})
    assert loss_curve(lines) == ("dit_val", [2], [1.5])
    assert loss_curve([{"phase": "tae", "step": 1, "loss": 9.0}]) is None


def test_print_launch_prints_one_line_per_run_and_runs_nothing(tmp_path):
    """Through `mgen sweep`: the lines, nothing written, and no device opened nor model code
    loaded by the sweep's own process (on a TPU VM it must leave the chips to the runs)."""
    out = tmp_path / "out"
    script = "\n".join([
        "import sys", "from mgen_jax.cli import main", "main(sys.argv[1:])",
        "loaded = {m.split('.')[1] for m in sys.modules if m.startswith('mgen_jax.')}",
        "assert not loaded & {'models', 'flow', 'checkpointing', 'training', 'inference',",
        "                     'evaluation'}, loaded",
        # (jax may be imported, for mgen's compilation-cache setting, but no backend started)
        "from jax._src import xla_bridge",
        "assert not xla_bridge.backends_are_initialized(), 'the sweep process opened a device'"])
    common = [sys.executable, "-c", script, "sweep", f"--out={out}", "--print-launch"]
    proc = subprocess.run(
        [*common, "--sweep=experiments/sweeps/dit_width.py", "--sweep.axes.dit.width=(32,64,96)",
         "--config.dit_train.steps=700", "--launch-prefix=gcloud compute tpus tpu-vm ssh vm "
         "--worker=all --command="], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines == [
        f"gcloud compute tpus tpu-vm ssh vm --worker=all --command='mgen train "
        f"--config=experiments/quickstart.py --config.dit_train.steps=700 --config.dit.width={w} "
        f"--config.dit.mlp_dim={m} --workdir={out}/width-{w}_mlp_dim-{m}'"
        for w, m in ((32, 176), (64, 352), (96, 528))]
    proc = subprocess.run([*common, "--sweep=experiments/sweeps/cfg_scale.py"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # The base's training first, then one line per scale.
    assert lines[0] == (f"mgen train --config=experiments/quickstart.py --workdir={out}/base "
                        "--skip-eval")
    assert lines[1:] == [f"mgen sweep --sweep=experiments/sweeps/cfg_scale.py --out={out} "
                         f"--only=guidance_scale-{s}" for s in (1.0, 2.0, 3.5, 5.0, 7.5, 10.0)]
    assert not out.exists()
    bad = subprocess.run([sys.executable, "-m", "mgen_jax.cli", "sweep", f"--out={out}",
                          "--sweep=experiments/sweeps/cfg_scale.py", "--print-launch",
                          "--sweep.axes.eval.guidance_scale=(1.0,1.0)"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "mgen sweep: experiments/sweeps/cfg_scale.py: sweep.axes.eval.guidance_scale: (1.0, 1.0) "
        "repeats a value")
