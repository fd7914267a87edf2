"""Orbax checkpoints of one training phase: train state, frozen inputs, data-iterator state and
JSON metadata, saved together per step. Orbax writes each step to a temporary directory and
renames it when complete, so a run killed at any moment leaves only whole checkpoints.

Asynchronous saving (`asynchronous=True`, what training uses): `save` returns once the arrays
are copied off the devices and the iterator state is written (Grain's handler is synchronous, so
it records the position as of the save); the files are written by Orbax's background thread
while the next steps run. Orbax waits for a pending save before starting the next one; `wait()`,
`restore` and `close` wait for it too.

A newest checkpoint can still be damaged after the fact (a truncated copy, a deleted file):
`restore_latest_good` tries steps newest first, names each damaged one and moves it aside to
`<directory>.damaged/` (so the resumed run can write that step again), and raises
DamagedCheckpointError when none can be restored: it never starts a phase over silently.

A checkpoint written by M processes restores into N: the arrays through the abstract state's
shardings, the data position by `rescaled_data_position` (the global-order pipeline's position
is the same count of global batches at any process count)."""
import glob
import json
import os
import re
import sys

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from mgen_jax.parallel.distributed import barrier


class DamagedCheckpointError(ValueError):
    """No checkpoint of a phase can be restored (a ValueError: the CLI reports it in one line)."""


class DataLayoutError(ValueError):
    """The data-iterator state of a checkpoint cannot be carried to this process count."""


def rescaled_data_position(data_dir: str, process_count: int) -> dict:
    """The iterator state for `process_count` processes from a checkpoint's `data/` folder written
    by another count M. The global-order pipeline (data_pipelines/grain_pipeline.py) gives every
    process the same position {"next_index": k} = steps x local batch, and the global batch is
    fixed, so the position for N processes is k x M / N. Other states (the bucket mixture's) are
    per-process stream positions that do not carry over: DataLayoutError."""
    files = sorted(glob.glob(os.path.join(data_dir, "process_*-of-*.json")))
    layouts = {int(m.group(1)) for f in files
               if (m := re.search(r"-of-(\d+)\.json$", os.path.basename(f)))}
    if len(layouts) != 1:
        raise DataLayoutError(f"{data_dir} holds data positions of process counts "
                              f"{sorted(layouts)}; expected one")
    (saved,) = layouts
    states = []
    for f in files:
        with open(f) as fh:
            states.append(json.load(fh))
    positions = {s.get("next_index") if isinstance(s, dict) and set(s) == {"next_index"}
                 else None for s in states}
    if None in positions or len(positions) != 1:
        raise DataLayoutError(
            f"{data_dir} was written by {saved} processes and this run has {process_count}; its "
            f"data positions ({os.path.basename(files[0])}: {states[0]}) are per-process stream "
            f"states that cannot be rescaled: resume with {saved} processes")
    (index,) = positions
    if index * saved % process_count:
        raise DataLayoutError(f"data position {index} of {saved} processes is not a whole number "
                              f"of rows for {process_count} processes")
    return {"next_index": index * saved // process_count}


class PhaseCheckpointer:
    def __init__(self, directory: str, *, keep: int = 2, asynchronous: bool = False,
                 clean_partial: bool = False):
        """clean_partial: remove the temporary directories of saves cut short by a kill (only
        the run that writes this directory may: a reader would delete a save in progress)."""
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=asynchronous,
                                                 cleanup_tmp_directories=clean_partial))

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, *, frozen=None, iterator=None, meta: dict | None = None) -> None:
        """Checkpoint `step`. The saved content is the state at this call even when asynchronous
        (the arrays may be donated to the next step as soon as this returns)."""
        items = {"state": ocp.args.StandardSave(state)}
        if frozen is not None:
            items["frozen"] = ocp.args.StandardSave(frozen)
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(iterator)
        if meta is not None:
            items["meta"] = ocp.args.JsonSave(meta)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        """Block until the pending asynchronous save (if any) is complete on disk."""
        self.manager.wait_until_finished()

    def reached_preemption(self, step: int) -> bool:
        """True at the step every process of a jax.distributed job agreed to save at after a
        preemption notice (Orbax over JAX's preemption sync manager; False in one process)."""
        return self.manager.reached_preemption(step)

    def restore(self, step: int, abstract_state, *, abstract_frozen=None, iterator=None):
        """Restores straight into the shardings carried by the abstract pytrees. Returns
        (state, frozen, meta); the iterator, if given, is rewound in place."""
        self.wait()
        items = {"state": ocp.args.StandardRestore(abstract_state), "meta": ocp.args.JsonRestore()}
        if abstract_frozen is not None:
            items["frozen"] = ocp.args.StandardRestore(abstract_frozen)
        rescaled = None
        if iterator is not None:
            data_dir = os.path.join(self.directory, str(step), "data")
            own = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
            if os.path.isdir(data_dir) and not os.path.exists(os.path.join(data_dir, own)):
                rescaled = rescaled_data_position(data_dir, jax.process_count())
            else:
                items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        if rescaled is not None:
            iterator.set_state(rescaled)
        return out["state"], out.get("frozen") if abstract_frozen is not None else None, out["meta"]

    def restore_latest_good(self, abstract_state, *, abstract_frozen=None, iterator=None):
        """(step, state, frozen, meta) of the newest checkpoint that restores, or None when
        there is none. Damaged newer steps are reported on stderr and moved aside."""
        self.wait()
        steps = self.all_steps()[::-1]
        failures = []
        for step in steps:
            try:
                restored, error = self.restore(step, abstract_state,
                                               abstract_frozen=abstract_frozen,
                                               iterator=iterator), None
            except DataLayoutError:  # whole, but for another process count: not damage
                raise
            except Exception as err:  # any read failure means this step cannot be resumed from
                restored, error = None, err
            # A file may be unreadable from one host only: every process must fall back together.
            if not _all_processes_agree(error is None):
                error = error or RuntimeError("damaged as read by another process")
            if error is None:
                self._set_aside([s for s, _ in failures])
                return (step, *restored)
            failures.append((step, _describe(error)))
            then = f"restoring step {steps[len(failures)]}" if len(failures) < len(steps) else \
                "no older checkpoint left"
            _report(f"checkpoint step {step} in {self.directory} is damaged "
                    f"({failures[-1][1]}); {then}")
        if failures:
            listed = "; ".join(f"step {s}: {e}" for s, e in failures)
            raise DamagedCheckpointError(
                f"no checkpoint in {self.directory} can be restored ({listed}). If the config "
                f"changed, train into a new --workdir; to start this phase over, move "
                f"{self.directory} away")
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Move damaged steps to <directory>.damaged/<step>, out of Orbax's sight, so the resumed
        run can save those steps again (Orbax refuses to overwrite a step)."""
        if not steps:
            return
        if jax.process_index() == 0:
            aside = self.directory + ".damaged"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                src = os.path.join(self.directory, str(step))
                if os.path.exists(src):
                    dst = os.path.join(aside, str(step))
                    n = 1
                    while os.path.exists(dst):
                        dst, n = os.path.join(aside, f"{step}.{n}"), n + 1
                    os.replace(src, dst)
                    _report(f"moved damaged checkpoint step {step} to {dst}")
        if jax.process_count() > 1:
            barrier(f"set_aside:{self.directory}")
        self.manager.reload()

    def read_meta(self, step: int) -> dict:
        self.wait()
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def close(self) -> None:
        """Wait for the pending save and release Orbax's resources."""
        self.manager.close()


def _all_processes_agree(ok: bool) -> bool:
    if jax.process_count() == 1:
        return ok
    barrier("checkpoint: every process checked")  # processes arrive far apart; see barrier()
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(error).__name__}: {first[:300]}"


def _report(message: str) -> None:
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
