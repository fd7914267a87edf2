"""The command line of each run: argv lists the runner starts locally, and the shell lines
`--print-launch` prints for TPU VMs (optionally behind a prefix such as
`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=`)."""
import os
import shlex
import sys

from mgen_jax.sweeps.runs import BASE_RUN, Run, check_run_configs, expand_runs

# Locally the runs use this interpreter (the sweep's own environment); printed lines use the
# console script a TPU VM's install provides.
LOCAL_PROGRAM = (sys.executable, "-m", "mgen_jax.cli")
PRINTED_PROGRAM = ("mgen",)


def run_dir(out: str, name: str) -> str:
    return os.path.join(out, name)


def base_workdir(sweep, out: str) -> str:
    """mode=sample: the workdir every run samples from."""
    return sweep.base_workdir or run_dir(out, BASE_RUN)


def train_argv(sweep, assignments, workdir: str, *, program=LOCAL_PROGRAM,
               skip_eval: bool = False, progress: bool = False) -> list[str]:
    argv = [*program, "train", f"--config={sweep.base}",
            *(f"--config.{a}" for a in (*sweep.overrides, *assignments)), f"--workdir={workdir}"]
    return argv + (["--skip-eval"] if skip_eval else []) + ([] if progress else ["--no-progress"])


def run_argv(sweep, run: Run, out: str) -> list[str]:
    """What the runner starts for `run`: its whole training job, or (mode=sample) the evaluation
    of its prepared folder (sample_run.py)."""
    if sweep.mode == "sample":
        return [*LOCAL_PROGRAM, "eval", f"--workdir={run_dir(out, run.name)}"]
    return train_argv(sweep, run.assignments, run_dir(out, run.name))


def base_train_argv(sweep, out: str, *, program=LOCAL_PROGRAM, progress=False) -> list[str]:
    """mode=sample: train the base once, without evaluating it (its runs evaluate)."""
    return train_argv(sweep, (), base_workdir(sweep, out), program=program, skip_eval=True,
                      progress=progress)


def _shell_line(argv, prefix: str) -> str:
    line = shlex.join(argv)
    if not prefix:
        return line
    # `--command=` takes the line as one word; a prefix ending in a space takes it likewise.
    joiner = "" if prefix.endswith(("=", " ")) else " "
    return f"{prefix}{joiner}{shlex.quote(line)}"


def launch_lines(sweep, out: str, relaunch_args, prefix: str = "") -> list[str]:
    """One shell line per run. mode=train: its `mgen train` (which also evaluates). mode=sample:
    first the base's `mgen train` (unless base_workdir names a trained one; run it to completion
    first), then per run `mgen sweep ... --only=RUN`, which prepares that run's folder and
    evaluates it. relaunch_args: the sweep's own flags (--sweep=, --out=, overrides).
    Every run's config is validated first: no line is printed for a sweep that cannot run."""
    runs = expand_runs(sweep)
    check_run_configs(sweep, runs)
    if sweep.mode == "train":
        return [_shell_line(train_argv(sweep, r.assignments, run_dir(out, r.name),
                                       program=PRINTED_PROGRAM, progress=True), prefix)
                for r in runs]
    lines = [] if sweep.base_workdir else [
        _shell_line(base_train_argv(sweep, out, program=PRINTED_PROGRAM, progress=True), prefix)]
    return lines + [_shell_line([*PRINTED_PROGRAM, "sweep", *relaunch_args, f"--only={r.name}"],
                                prefix) for r in runs]
