"""Preemption and kills: a SIGTERM ends a phase with a checkpoint of the step in progress and exit
status 0, and a rerun of the same command continues exactly; SIGKILLs at random steps lose only
the steps after the last checkpoint. In process (tiny loop, default run) and through `mgen train`
(slow). The DiT phase's observability (validation, samples, trace, throughput) runs on the
same reference (slow)."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import flax.struct
import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.training.loop import run_training
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.preemption import (GRACE_EXCEEDED_STATUS, Preempted, PreemptionWatch,
                                          agreement_mode)


# ---- the watch --------------------------------------------------------------------------------

def test_sigterm_marks_the_next_step_and_the_handler_is_given_back():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatch(lambda step: False, 30.0, mode="local") as watch:
        assert not watch.reached(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert watch.reached(2) and watch.reached(3)
    assert signal.getsignal(signal.SIGTERM) is before
    assert agreement_mode() == "local"  # one process


def test_jax_mode_follows_the_agreed_step_and_leaves_sigterm_to_jax():
    before = signal.getsignal(signal.SIGTERM)
    asked = []
    watch = PreemptionWatch(lambda step: asked.append(step) or step == 5, 30.0, mode="jax")
    assert signal.getsignal(signal.SIGTERM) is before  # JAX's notifier owns SIGTERM there
    assert [watch.reached(s) for s in (4, 5)] == [False, True] and asked == [4, 5]
    watch.close()


def test_watchdog_exits_when_the_save_outlives_the_grace(capsys):
    exited = threading.Event()
    codes = []
    watch = PreemptionWatch(lambda step: False, 0.05, mode="local", phase="dit",
                            exit_fn=lambda code: (codes.append(code), exited.set()))
    os.kill(os.getpid(), signal.SIGTERM)
    assert watch.reached(7)
    assert exited.wait(5.0) and codes == [GRACE_EXCEEDED_STATUS]
    watch.close()
    assert "checkpoint of step 7 was not on disk within" in capsys.readouterr().err


def test_watchdog_is_disarmed_by_a_timely_exit():
    codes = []
    watch = PreemptionWatch(lambda step: False, 0.2, mode="local", exit_fn=codes.append)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watch.reached(1)
    watch.close()
    time.sleep(0.4)
    assert codes == []


# ---- the loop, in process ---------------------------------------------------------------------

@flax.struct.dataclass
class _State:
    step: jax.Array
    params: jax.Array


@jax.jit
def _step(state, batch, key):
    target = jnp.mean(batch["x"]) + jax.random.normal(key, state.params.shape)
    loss = jnp.mean((state.params - target) ** 2)
    return (_State(step=state.step + 1, params=state.params - 0.1 * (state.params - target)),
            {"loss": loss})


def _iterator():
    ds = grain.MapDataset.range(10_000).shuffle(seed=3).map(
        lambda i: {"x": np.float32(i) / 1000.0}).batch(4)
    return iter(ds.to_iter_dataset())


def _run(workdir, *, steps, sigterm_at=None, asynchronous=True):
    """run_training over the tiny state, restored from workdir's newest checkpoint if any; a
    SIGTERM is sent to this process while step `sigterm_at` runs."""
    ckpt = PhaseCheckpointer(os.path.join(workdir, "ckpt"), keep=2, asynchronous=asynchronous)
    it = _iterator()
    state = _State(step=jnp.zeros((), jnp.int32), params=jnp.zeros((5,), jnp.float32))
    restored = ckpt.restore_latest_good(jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state),
        iterator=it)
    done = [0 if restored is None else restored[0]]
    if restored is not None:
        state = restored[1]

    def step_fn(state, batch, key):
        done[0] += 1
        if done[0] == sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return _step(state, batch, key)

    writer = MetricsWriter(workdir, "toy")
    try:
        return run_training(phase="toy", step_fn=step_fn, state=state, num_steps=steps,
                            iterator=it, to_device=jax.device_put, key=jax.random.key(0),
                            checkpointer=ckpt, writer=writer, log_every=1, checkpoint_every=4,
                            meta={"toy": True}, show_progress=False)
    finally:
        writer.close()


def _losses(workdir, phase):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return {r["step"]: r["loss"] for r in records if r["phase"] == phase}


def test_sigterm_saves_the_step_in_progress_and_the_rerun_continues_exactly(tmp_path):
    reference = _run(str(tmp_path / "ref"), steps=12)
    workdir = str(tmp_path / "cut")
    with pytest.raises(Preempted) as stop:
        _run(workdir, steps=12, sigterm_at=7)
    assert stop.value.code == 0 and stop.value.step == 7  # exit status 0, the step in progress
    assert PhaseCheckpointer(os.path.join(workdir, "ckpt")).all_steps() == [4, 7]
    assert max(_losses(workdir, "toy")) == 7
    final = _run(workdir, steps=12)
    np.testing.assert_array_equal(np.asarray(final.params), np.asarray(reference.params))
    assert _losses(workdir, "toy") == _losses(str(tmp_path / "ref"), "toy")


# ---- `mgen train`, in subprocesses (slow) -----------------------------------------------------

SMOKE = "experiments/quickstart.py:smoke"
DIT_STEPS = 40
GRACE_S = 30.0
# Every step logged; checkpoints only at the end unless a test asks for more.
COMMON = [f"--config.dit_train.steps={DIT_STEPS}", "--config.dit_train.log_every=1"]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one CPU device, as a user's laptop run
    env["JAX_PLATFORMS"] = "cpu"
    return env


def _train_cmd(workdir, checkpoint_every):
    return [sys.executable, "-m", "mgen_jax.cli", "train", f"--config={SMOKE}",
            f"--workdir={workdir}", "--no-progress", "--skip-eval", *COMMON,
            f"--config.dit_train.checkpoint_every={checkpoint_every}"]


def _records(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            pass
    return out


def _dit_losses(workdir):
    records = [r for r in _records(workdir) if r["phase"] == "dit"]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), f"a DiT step logged twice or out of order: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _last_dit_step(workdir):
    return max((r["step"] for r in _records(workdir) if r["phase"] == "dit"), default=0)


def _dit_checkpoints(workdir):
    folder = os.path.join(workdir, "checkpoints", "dit")
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit()) if os.path.isdir(folder) else []


def _start_until(cmd, workdir, dit_step, log):
    """Start `mgen train` and return (process, when) once the DiT phase has logged dit_step."""
    out = open(log, "w")
    proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 900
    while _last_dit_step(workdir) < dit_step:
        assert proc.poll() is None, f"the run ended before DiT step {dit_step}:\n" + \
            open(log).read()[-3000:]
        assert time.time() < deadline, "timed out waiting for the DiT phase"
        time.sleep(0.05)
    return proc


def _finish(cmd, log):
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    with open(log, "w") as f:
        f.write(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _from_reference(reference, workdir):
    """A workdir whose data, TAE and latents phases are the reference run's (the same config up
    to dit_train, which none of them reads): only the DiT phase is left to run."""
    shutil.copytree(reference, workdir, ignore=shutil.ignore_patterns("dit", "config.json",
                                                                      "timings.json"))
    records = [r for r in _records(workdir) if r["phase"] != "dit"]
    with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: its DiT losses are what every interrupted run must reproduce."""
    workdir = str(tmp_path_factory.mktemp("preemption") / "reference")
    _finish(_train_cmd(workdir, checkpoint_every=1000), workdir + ".log")
    losses = _dit_losses(workdir)
    assert sorted(losses) == list(range(1, DIT_STEPS + 1))
    return workdir, losses


@pytest.mark.slow
def test_sigterm_exits_0_with_a_checkpoint_of_the_last_step_and_resumes_exactly(reference,
                                                                                 tmp_path):
    ref_dir, ref_losses = reference
    workdir = str(tmp_path / "wd")
    _from_reference(ref_dir, workdir)
    cmd = _train_cmd(workdir, checkpoint_every=1000)  # no periodic DiT checkpoint before 40
    proc = _start_until(cmd, workdir, dit_step=5, log=str(tmp_path / "first.log"))
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=GRACE_S + 30)
    elapsed = time.monotonic() - sent
    log = open(tmp_path / "first.log").read()
    assert rc == 0, log[-3000:]
    assert elapsed < GRACE_S, f"took {elapsed:.1f} s from SIGTERM to exit"
    last = _last_dit_step(workdir)
    assert 5 <= last < DIT_STEPS, "the run finished before the SIGTERM"
    assert _dit_checkpoints(workdir) == [last]
    assert "preempted: saved the dit checkpoint of step" in log
    assert not os.path.exists(os.path.join(workdir, "eval.json"))

    resumed = _finish(cmd, str(tmp_path / "second.log"))
    assert f"[dit] resumed from step {last}" in resumed.stdout
    losses = _dit_losses(workdir)
    assert sorted(losses) == sorted(ref_losses)
    np.testing.assert_allclose([losses[s] for s in sorted(losses)],
                               [ref_losses[s] for s in sorted(ref_losses)], rtol=1e-6)


@pytest.mark.slow
def test_sigkill_at_three_random_steps_resumes_exactly(reference, tmp_path):
    ref_dir, ref_losses = reference
    workdir = str(tmp_path / "wd")
    _from_reference(ref_dir, workdir)
    cmd = _train_cmd(workdir, checkpoint_every=3)  # asynchronous saves, often cut by a kill
    targets = sorted(random.Random(15).sample(range(3, DIT_STEPS - 3), 3))
    killed = []
    for i, target in enumerate(targets):
        target = max(target, _last_dit_step(workdir) + 2)
        proc = _start_until(cmd, workdir, dit_step=target, log=str(tmp_path / f"run{i}.log"))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed.append(_last_dit_step(workdir))
        assert killed[-1] < DIT_STEPS, f"the run finished before the kill at {target}"
    _finish(cmd, str(tmp_path / "final.log"))
    losses = _dit_losses(workdir)
    assert sorted(losses) == sorted(ref_losses), f"killed after steps {killed}"
    np.testing.assert_allclose([losses[s] for s in sorted(losses)],
                               [ref_losses[s] for s in sorted(ref_losses)], rtol=1e-6)


@pytest.mark.slow
def test_validation_samples_profile_and_throughput_are_logged(reference, tmp_path):
    """The DiT phase's observability on the reference's data, TAE and latents: held-out loss at
    fixed t at its interval, a sample video, a trace of the step range, tokens/s (no MFU on a
    CPU unless its peak is given)."""
    import av
    ref_dir, _ = reference
    workdir = str(tmp_path / "wd")
    _from_reference(ref_dir, workdir)
    cmd = _train_cmd(workdir, checkpoint_every=1000) + [
        "--config.dit_train.steps=6", "--config.dit_train.validate_every=3",
        "--config.dit_train.validation_clips=8", "--config.dit_train.sample_every=6",
        "--config.dit_train.sample_count=1", "--config.dit_train.profile_steps=(2,3)",
        "--config.dit_train.peak_flops_per_device=1e12", "--config.eval.sample_steps=2"]
    _finish(cmd, str(tmp_path / "run.log"))
    records = _records(workdir)
    val = [r for r in records if r["phase"] == "dit_val"]
    assert [r["step"] for r in val] == [0, 3, 6]  # step 0: the model the phase starts from
    for r in val:
        per_t = [r[f"loss_t={t:g}"] for t in (0.1, 0.3, 0.5, 0.7, 0.9)]
        assert np.all(np.isfinite(per_t)) and r["loss"] == pytest.approx(np.mean(per_t))
    assert val[1]["loss"] != val[2]["loss"], "the validation loss did not follow the parameters"
    dit = [r for r in records if r["phase"] == "dit"]
    for r in dit:
        assert r["tokens_per_sec"] > 0 and 0 < r["mfu"] < 1
        # clips of 2x4x4 latent tokens (1x1x1 patches)
        assert r["tokens_per_sec"] == pytest.approx(32 * r["samples_per_sec"])
    video = os.path.join(workdir, "samples", "dit", "0000006", "00.mp4")
    with av.open(video) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == 16
    assert os.listdir(os.path.join(workdir, "tensorboard", "dit_samples"))
    traces = [f for _, _, files in os.walk(os.path.join(workdir, "profile", "dit"))
              for f in files if f.endswith(".xplane.pb")]
    assert traces, "no profiler trace written"
    with open(os.path.join(workdir, "model.json")) as f:
        model = json.load(f)["dit"]
    assert model["size"] == "tiny" and model["params"] > 0 and model["tokens_per_sample"] == 32
    for r in dit:  # the MFU is the analytic FLOPs of the tokens trained, over the peak
        assert r["mfu"] * 1e12 == pytest.approx(model["train_flops_per_token"]
                                                * r["tokens_per_sec"], rel=1e-6)
