"""Multi-process training (parallel/distributed.py): who decides the process setup, that only
process 0 writes shared files, and (slow) two CPU processes of 4 devices training the quickstart
smoke exactly like one process of 8."""
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from mgen_jax import cli
from mgen_jax.parallel import distributed
from mgen_jax.training.metrics import MetricsWriter

REPO = Path(__file__).resolve().parents[2]
ENV_NAMES = (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES,
             distributed.ENV_PROCESS_ID, distributed.MULTISLICE_ENV, *distributed.TPU_HOSTS_ENV)


@pytest.fixture
def fake_init(monkeypatch):
    """jax.distributed.initialize recorded instead of run; a clean process environment."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    return calls


def test_flags_win_over_environment(fake_init, monkeypatch):
    monkeypatch.setenv("MGEN_COORDINATOR", "envhost:1")
    monkeypatch.setenv("MGEN_NUM_PROCESSES", "8")
    monkeypatch.setenv("MGEN_PROCESS_ID", "7")
    setup = distributed.initialize_distributed("flaghost:2", 4, 3)
    assert fake_init == [(("flaghost:2", 4, 3), {})]
    assert setup["source"] == "flags"
    # Per value: a flag left out falls back to its variable.
    assert distributed.resolve_processes(None, 16, None) == {
        "source": "flags", "coordinator": "envhost:1", "num_processes": 16, "process_id": 7}


def test_environment_when_no_flags(fake_init, monkeypatch):
    monkeypatch.setenv("MGEN_COORDINATOR", "envhost:1")
    monkeypatch.setenv("MGEN_NUM_PROCESSES", "2")
    monkeypatch.setenv("MGEN_PROCESS_ID", "1")
    assert distributed.initialize_distributed()["source"] == "env"
    assert fake_init == [(("envhost:1", 2, 1), {})]


def test_tpu_pod_lets_jax_detect(fake_init, monkeypatch):
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t1k-w-0,t1k-w-1")
    assert distributed.initialize_distributed()["source"] == "tpu"
    assert fake_init == [((), {})]
    fake_init.clear()
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")  # a single-host TPU VM
    assert distributed.initialize_distributed()["source"] == "single"
    assert distributed.initialize_distributed("auto")["coordinator"] == "auto"
    assert fake_init == [((), {})]


def test_one_process_is_a_no_op(fake_init):
    assert distributed.initialize_distributed() == {
        "source": "single", "coordinator": None, "num_processes": 1, "process_id": 0}
    assert distributed.initialize_distributed(num_processes=1)["source"] == "single"
    assert fake_init == []
    distributed.barrier("nothing to wait for")
    assert distributed.is_coordinator() and distributed.continue_alone()


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_processes=2, process_id=0), "needs all of coordinator"),
    (dict(coordinator="h:1", num_processes=2), "needs all of coordinator"),
    (dict(coordinator="h:1", num_processes=2, process_id=2), "not in"),
])
def test_incomplete_setup_is_refused(fake_init, kwargs, message):
    with pytest.raises(ValueError, match=message):
        distributed.initialize_distributed(**kwargs)
    assert fake_init == []


def test_bad_environment_value_is_named(fake_init, monkeypatch):
    monkeypatch.setenv("MGEN_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="MGEN_NUM_PROCESSES='two'"):
        distributed.initialize_distributed()


def test_train_flags_reach_the_setup(fake_init):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--config=experiments/quickstart.py:smoke", "--workdir=/tmp/never",
                  "--num_processes=2", "--process_id=1"])
    assert str(exit_info.value.code).startswith(
        "mgen train: a multi-process run needs all of coordinator")
    assert fake_init == []


def test_only_process_0_writes_metrics(tmp_path, monkeypatch):
    other = MetricsWriter(str(tmp_path), "dit", active=False)
    other.truncate_after(0)
    other.write(1, {"loss": 1.0})
    other.close()
    assert list(tmp_path.iterdir()) == []  # no metrics.jsonl, no tensorboard/
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert not MetricsWriter(str(tmp_path), "dit").active  # the default follows the process
    monkeypatch.setattr(jax, "process_index", lambda: 0)
    first = MetricsWriter(str(tmp_path), "dit")
    first.write(1, {"loss": 1.0})
    first.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln) for ln in lines] == [{"phase": "dit", "step": 1, "loss": 1.0}]


def test_barriers_go_through_the_coordination_service(monkeypatch):
    """Barriers are the coordination service's (no device collective: gloo's first context
    waits only 30 s), and a program's first call is compiled before its barrier, so no
    process starts its collectives while another still compiles; the call then reuses it."""
    events = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, _, **kw: events.append("compile")
        if event == "/jax/core/compile/backend_compile_duration" else None)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(distributed.orbax_multihost, "get_barrier_sync_fn",
                        lambda: lambda key, timeout_ms: events.append(key))
    step = distributed.CompiledTogether(jax.jit(lambda x: x * 2 + 1), "double")
    three, four = jax.numpy.float32(3.0), jax.numpy.float32(4.0)
    assert step.eval_shape(three).shape == ()  # the jitted function's own attributes
    events.clear()
    assert float(step(three)) == 7.0 and float(step(four)) == 9.0
    assert len(events) == 2 and events[0] == "compile", events  # compiled once, then waited
    assert events[1].endswith(": compiled: double")
    distributed.barrier("again")
    distributed.barrier("again")  # a repeated name is a new barrier
    assert len(set(events)) == 4 and events[-1].endswith(": again")


# --- two processes on this machine -------------------------------------------------------------

TRAIN = ["train", "--config=experiments/quickstart.py:smoke", "--no-progress",
         "--config.tae_train.steps=2", "--config.tae_train.batch_size=8",
         "--config.dit_train.steps=4", "--config.data.num_clips=64", "--config.mesh.data=-1"]
TIMEOUT_S = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    for name in ENV_NAMES:
        env.pop(name, None)
    return env


def _run_job(workdir: Path, *, processes: int, devices: int, extra=()) -> list:
    """Start `processes` copies of `mgen train`, wait for all; fail with each one's
    output tail if any fails. Returns their outputs."""
    argv = [sys.executable, "-m", "mgen_jax.cli", *TRAIN, f"--workdir={workdir}", *extra]
    port = _free_port()
    procs = []
    for i in range(processes):
        flags = ([f"--coordinator=localhost:{port}", f"--num_processes={processes}",
                  f"--process_id={i}"] if processes > 1 else [])
        procs.append(subprocess.Popen(argv + flags, cwd=REPO, env=_env(devices), text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs, failed = [], False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            out, _ = p.communicate()
        outputs.append(out)
        failed |= p.returncode != 0
    if failed:
        tails = "\n".join(f"--- process {i} (exit {p.returncode}):\n{out[-4000:]}"
                          for i, (p, out) in enumerate(zip(procs, outputs)))
        pytest.fail(f"{processes}-process mgen train failed\n{tails}")
    return outputs


def _losses(workdir: Path) -> dict:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)), "a metrics line was written twice"
    recs = [json.loads(ln) for ln in lines]
    keys = [(r["phase"], r["step"]) for r in recs]
    assert len(keys) == len(set(keys)), f"a step was logged twice: {keys}"
    return {k: r["loss"] for k, r in zip(keys, recs)}


def _as_one_process_tae(two: Path, one: Path) -> None:
    """Seed a one-process workdir with the two-process run's data and TAE checkpoint, so the
    one-process run restores the TAE (in another layout, its data position rescaled from two
    processes' to one's) instead of training it again."""
    one.mkdir()
    shutil.copy(two / "config.json", one / "config.json")
    shutil.copytree(two / "data", one / "data")
    shutil.copytree(two / "checkpoints" / "tae", one / "checkpoints" / "tae")
    assert sorted((one / "checkpoints" / "tae").glob("*/data/process_*-of-2.json")), \
        "the TAE checkpoint holds no data-iterator state"


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    two, one = tmp_path / "two_processes", tmp_path / "one_process"
    # Two processes x 4 devices train the whole job; then process 0 evaluates alone on its 4
    # devices, restoring the TAE and DiT that 8 devices in 2 processes wrote into another layout.
    outputs = _run_job(two, processes=2, devices=4)
    # One process x 8 devices: the same TAE (restored, in another layout), then latents and DiT.
    _as_one_process_tae(two, one)
    _run_job(one, processes=1, devices=8, extra=["--skip-eval"])

    expected, got = _losses(one), _losses(two)
    print("1 process x 8 devices:", expected, "\n2 processes x 4 devices:", got)
    assert set(expected) == {("dit", 2), ("dit", 4)}
    assert set(got) == {("tae", 2), ("dit", 2), ("dit", 4)}
    for key, loss in expected.items():
        assert got[key] == pytest.approx(loss, rel=1e-5), key

    # One writer for each shared file.
    assert sorted(os.listdir(two / "tensorboard")) == ["dit", "tae"]
    for phase in ("dit", "tae"):
        assert len(os.listdir(two / "tensorboard" / phase)) == 1, "a second events file"
    assert not [p for p in two.rglob("*") if ".tmp" in p.name], "a temporary file was left"
    assert "held-out accuracy" in outputs[0] and "held-out accuracy" not in outputs[1]
    assert json.loads((two / "eval.json").read_text())["count"] > 0
    shutil.rmtree(tmp_path, ignore_errors=True)
