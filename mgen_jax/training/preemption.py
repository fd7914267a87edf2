"""Preemption: a TPU VM's maintenance or preemption notice (SIGTERM) ends the job cleanly. The
training loop finishes the step it is in, every process saves that same step, and the job stops
by raising `Preempted` (a SystemExit with status 0: no later phase starts); rerunning the same
command resumes from that checkpoint.

All processes of a multi-host run must agree on the step to save, or they would wait on each
other in different collectives. `PreemptionWatch.reached(step)`, asked after every step, is true
at the same step everywhere:
  * one process: our SIGTERM handler sets a flag; reading it costs nothing.
  * several processes with JAX's preemption service (on by default with jax.distributed): JAX's
    own SIGTERM notifier tells the coordination service, which picks the step after the largest
    any process has reached; Orbax's `CheckpointManager.reached_preemption(step)` is true at that
    step on every process. The per-step call is local (the agreement runs in the background).
  * several processes without it (jax_enable_preemption_service=False): our flag, all-gathered
    after every step, so one process's notice stops all at the same step. Cost: a tiny
    cross-host collective per step, and the host waits for each step to finish before it
    dispatches the next (no dispatch-ahead).
A SIGTERM outside a phase's loop (data preparation, restoring, between phases) keeps its
default effect in one process: the run stops there and resumes from the last checkpoint.

A watchdog bounds the time from the notice to the exit by train.preemption_grace_s: past it the
process exits with status 1 and says so; the newest complete checkpoint stays the one to resume
from (Orbax leaves no partial step), and the scheduler would have killed the process anyway."""
import os
import signal
import sys
import threading
import time
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

GRACE_EXCEEDED_STATUS = 1


class Preempted(SystemExit):
    """Raised by the training loop once the preemption checkpoint is on disk. A SystemExit with
    status 0, so the job stops and the process exits 0 without any handler; `mgen train` may
    catch it to print one line."""

    def __init__(self, phase: str, step: int):
        super().__init__(0)
        self.phase, self.step = phase, step

    def __str__(self) -> str:
        return (f"preempted: saved the {self.phase} checkpoint of step {self.step}; rerun the "
                "same command to resume")


def agreement_mode() -> str:
    """How the processes agree on the preemption step: "local" | "jax" | "allgather"."""
    if jax.process_count() == 1:
        return "local"
    return "jax" if jax.config.jax_enable_preemption_service else "allgather"


class PreemptionWatch:
    """While open, turns a preemption notice into one agreed step (see the module docstring).

    reached_sync_point: Orbax's CheckpointManager.reached_preemption (the "jax" mode).
    exit_fn: how the watchdog ends the process (tests pass a recorder)."""

    def __init__(self, reached_sync_point: Callable[[int], bool], grace_s: float, *,
                 phase: str = "", mode: str | None = None,
                 exit_fn: Callable[[int], None] = os._exit):
        self.reached_sync_point, self.grace_s, self.phase = reached_sync_point, grace_s, phase
        self.mode = agreement_mode() if mode is None else mode
        self.exit_fn = exit_fn
        self.notice: float | None = None  # time.monotonic() of this process's SIGTERM
        self._timer: threading.Timer | None = None
        self._previous = None
        # signal.signal works only in the main thread; elsewhere SIGTERM keeps its handler.
        if self.mode != "jax" and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame) -> None:
        if self.notice is None:
            self.notice = time.monotonic()

    def reached(self, step: int) -> bool:
        """Called by every process after each step with the number of steps done: True when
        this step's checkpoint is the preemption checkpoint. Arms the watchdog."""
        if self.mode == "jax":
            hit = bool(self.reached_sync_point(step))
        elif self.mode == "allgather":
            flags = multihost_utils.process_allgather(np.asarray(self.notice is not None))
            hit = bool(np.any(flags))
        else:
            hit = self.notice is not None
        if hit and self._timer is None:
            self._arm(step)
        return hit

    def _arm(self, step: int) -> None:
        # Time already spent since the notice (e.g. finishing the step) counts against the grace.
        elapsed = 0.0 if self.notice is None else time.monotonic() - self.notice
        self._timer = threading.Timer(max(self.grace_s - elapsed, 0.0), self._expired,
                                      args=(step,))
        self._timer.daemon = True
        self._timer.start()

    def _expired(self, step: int) -> None:
        print(f"[{self.phase}] preemption: the checkpoint of step {step} was not on disk within "
              f"train.preemption_grace_s = {self.grace_s:g} s of the notice; exiting with status "
              f"{GRACE_EXCEEDED_STATUS} (a rerun resumes from the newest complete checkpoint)",
              file=sys.stderr, flush=True)
        self.exit_fn(GRACE_EXCEEDED_STATUS)

    def close(self) -> None:
        """Disarm the watchdog and give SIGTERM back its previous handler."""
        if self._timer is not None:
            self._timer.cancel()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def __enter__(self) -> "PreemptionWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
