"""Run a sweep locally, one run after another, then write its table and plots.

Each run is a subprocess (`python -m mgen_jax.cli train ...`, or `... eval ...` for a sampling
run): its own JAX runtime, XLA caches and device memory, freed when it exits, so ten runs cost
what one does and a crash or an out-of-memory in one run cannot take the sweep down with it;
the sweep's own process builds no model and opens no device (on a TPU VM it must not hold
the chips the run needs).

A run is finished when its folder holds eval.json (written last and atomically, by `mgen train`
after training or by `mgen eval`): re-invoking a killed sweep skips finished runs, and an
interrupted run resumes from its own checkpoints, as `mgen train` does. A finished run whose
config.json is not the config the sweep asks for now is refused rather than reported as if it
were (the sweep changed: use a new --out).
"""
import json
import os
import subprocess
import sys
import time

from mgen_jax.sweeps.launch import base_train_argv, base_workdir, run_argv, run_dir
from mgen_jax.sweeps.plots import write_plots
from mgen_jax.sweeps.results import result_rows, training_workdir, write_tables
from mgen_jax.sweeps.runs import BASE_RUN, check_run_configs, expand_runs
from mgen_jax.sweeps.sample_run import prepare_sample_run
from mgen_jax.sweeps.spec import SweepError
from mgen_jax.workdir import config_path, eval_report_path

LOG_FILE = "sweep.log"     # each run's output (also echoed to the terminal)
SWEEP_FILE = "sweep.json"  # the resolved sweep, for the record


def run_logged(argv: list[str], log_path: str) -> int:
    """Run argv, echo its output to stdout and keep it in log_path; its exit code."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"$ {' '.join(argv)}\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def is_finished(folder: str, expected_config: dict) -> bool:
    """eval.json is there; SweepError if the folder's config is not the expected one."""
    if not os.path.exists(eval_report_path(folder)):
        return False
    if not os.path.exists(config_path(folder)):
        raise SweepError(f"{folder} holds an eval.json but no config.json: not a run of a sweep")
    with open(config_path(folder)) as f:
        found = json.load(f)
    if found != expected_config:
        differ = sorted(k for k in set(found) | set(expected_config)
                        if found.get(k) != expected_config.get(k))
        raise SweepError(f"{folder} finished with another config than this sweep's (differs in "
                         f"{differ}); use a new --out or remove that folder")
    return True


def _record_sweep(sweep, runs, out: str) -> None:
    record = {"sweep": sweep.to_dict(), "runs": [{"name": r.name, "values": dict(r.values)}
                                                  for r in runs]}
    tmp = os.path.join(out, f"{SWEEP_FILE}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, os.path.join(out, SWEEP_FILE))


def run_sweep(sweep, out: str, *, only: str | None = None, execute=run_logged,
              say=print) -> dict:
    """Run every unfinished run of `sweep` (or only the one named) into out/<run>/, then write
    out/results.csv, out/results.md and the PNGs. execute(argv, log_path) -> exit code starts a
    run (tests pass a cheap one). Returns {"runs": {name: status}, "files": [...]}; raises
    SweepError naming the failed runs after the table is written."""
    runs = expand_runs(sweep)
    configs = check_run_configs(sweep, runs)
    todo = runs
    if only is not None:
        todo = [r for r in runs if r.name == only]
        if not todo:
            raise SweepError(f"no run {only!r} in this sweep; its runs: "
                             + ", ".join(r.name for r in runs))
    os.makedirs(out, exist_ok=True)
    _record_sweep(sweep, runs, out)
    pending = [r for r in todo if not is_finished(run_dir(out, r.name), configs[r.name])]
    statuses = {r.name: "done" for r in todo if r not in pending}
    for run in todo:
        if run not in pending:
            say(f"[sweep] {run.name}: finished before, skipped")
    if pending and sweep.mode == "sample" and not sweep.base_workdir:
        say(f"[sweep] {BASE_RUN}: training the model every run samples")
        base = base_workdir(sweep, out)
        code = execute(base_train_argv(sweep, out), os.path.join(base, LOG_FILE))
        if code != 0:
            raise SweepError(f"training the base workdir {base} failed (exit {code}); see "
                             f"{os.path.join(base, LOG_FILE)}")
    for i, run in enumerate(pending):
        folder = run_dir(out, run.name)
        say(f"[sweep] {run.name} ({i + 1}/{len(pending)}): "
            + " ".join(run.assignments))
        if sweep.mode == "sample":
            prepare_sample_run(base_workdir(sweep, out), folder, configs[run.name])
        start = time.perf_counter()
        code = execute(run_argv(sweep, run, out), os.path.join(folder, LOG_FILE))
        ok = code == 0 and os.path.exists(eval_report_path(folder))
        statuses[run.name] = "done" if ok else "failed"
        say(f"[sweep] {run.name}: {statuses[run.name]} in {time.perf_counter() - start:.0f} s"
            + ("" if ok else f" (exit {code}; see {os.path.join(folder, LOG_FILE)})"))
    rows = result_rows(sweep, runs, out, statuses)
    files = write_tables(sweep, rows, out) + write_plots(sweep, runs, rows, out, training_workdir)
    failed = [name for name, status in statuses.items() if status == "failed"]
    if failed:
        raise SweepError(f"{len(failed)} run(s) failed: {', '.join(failed)} (logs: "
                         f"{out}/<run>/{LOG_FILE}); re-run the same command to retry them")
    return {"runs": {row["run"]: row["status"] for row in rows}, "files": files}
