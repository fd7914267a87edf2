"""The training loop shared by every phase: step, log (with throughput), checkpoint, show
progress, run the phase's hooks (validation, samples), trace a step range, stop cleanly on
preemption.

Step k uses the key fold_in(key, k) and the k-th batch of the data iterator, and checkpoints hold
the state, the iterator position and any frozen inputs together, so a resumed run takes exactly
the steps the interrupted one would have taken. Checkpoints are written asynchronously when the
checkpointer is (the step does not wait for the files); the loop waits for the pending write
before it returns, raises, or stops for a preemption (training/preemption.py)."""
import sys
import time
from typing import Callable, Iterator

import jax
from tqdm import tqdm

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.training.guards import guard_step
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.preemption import Preempted, PreemptionWatch
from mgen_jax.training.profiling import StepProfiler
from mgen_jax.training.throughput import Throughput


def run_training(*, phase: str, step_fn: Callable, state, num_steps: int, iterator: Iterator,
                 to_device: Callable[[dict], dict], key: jax.Array,
                 checkpointer: PhaseCheckpointer, writer: MetricsWriter, log_every: int,
                 checkpoint_every: int, extra_args: tuple = (), frozen=None,
                 meta: dict | None = None, show_progress: bool = True,
                 preemption_grace_s: float = 30.0, throughput: Throughput | None = None,
                 profiler: StepProfiler | None = None, hooks: tuple = ()):
    """Runs `step_fn(state, *extra_args, batch, key)` from state.step to num_steps. On a
    preemption notice: saves the step in progress and raises Preempted (exit status 0).
    throughput: rates added to each log line; hooks: objects with begin(start step, state) ->
    state and after_step(done, state) -> state, run after each step's log line and before its
    checkpoint (validation, samples; validation may advance the optimizer's plateau state)."""
    start = int(jax.device_get(state.step))
    writer.truncate_after(start)
    for hook in hooks:
        state = hook.begin(start, state)
    bar = tqdm(total=num_steps, initial=start, desc=phase, unit="step", mininterval=2.0,
               disable=not show_progress, dynamic_ncols=True)
    last_time, last_step = time.perf_counter(), start
    profiler = profiler or StepProfiler((), "")
    step_fn = guard_step(step_fn, phase=phase, start=start,  # NonFiniteError, transfer guard
                         checkpoint_every=checkpoint_every, num_steps=num_steps)
    watch = PreemptionWatch(checkpointer.reached_preemption, preemption_grace_s, phase=phase)
    try:
        for step in range(start, num_steps):
            host_batch = next(iterator)
            if throughput is not None:
                throughput.record(host_batch)
            with profiler.step(step + 1, phase):
                batch = to_device(host_batch)
                state, metrics = step_fn(state, *extra_args, batch, jax.random.fold_in(key, step))
            done = step + 1
            profiler.after(done, state)
            bar.update(1)
            if done % log_every == 0 or done == num_steps:
                metrics = jax.device_get(metrics)
                now = time.perf_counter()
                metrics["steps_per_sec"] = (done - last_step) / max(now - last_time, 1e-9)
                if throughput is not None:
                    metrics.update(throughput.rates())
                last_time, last_step = now, done
                writer.write(done, metrics)
                bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
            for hook in hooks:
                state = hook.after_step(done, state)
            preempted = watch.reached(done)
            if preempted or done % checkpoint_every == 0 or done == num_steps:
                checkpointer.save(done, state, frozen=frozen, iterator=iterator, meta=meta)
            if preempted:
                _stop(phase, done, checkpointer, writer)
        checkpointer.wait()
        # A notice during the last step or its save: the phase is complete on disk; stop the job
        # rather than start the next phase. (JAX's agreed notice outlives the phase: the next
        # phase's loop honours it.)
        if watch.mode != "jax" and watch.reached(num_steps):
            _stop(phase, num_steps, checkpointer, writer)
    finally:
        checkpointer.wait()  # every way out leaves the pending checkpoint complete on disk
        profiler.stop()
        watch.close()
        bar.close()
    return state


def _stop(phase: str, step: int, checkpointer: PhaseCheckpointer, writer: MetricsWriter):
    """End the job after a preemption notice, once step's checkpoint is on disk."""
    checkpointer.wait()
    writer.close()
    stop = Preempted(phase, step)
    if jax.process_index() == 0:
        print(f"[{phase}] {stop}", file=sys.stderr, flush=True)
    raise stop
