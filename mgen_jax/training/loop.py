"""The training loop shared by every phase: step, log, checkpoint, show progress.

Step k uses the key fold_in(key, k) and the k-th batch of the data iterator, and checkpoints hold
the state, the iterator position and any frozen inputs together, so a resumed run takes exactly
the steps the interrupted one would have taken."""
import time
from typing import Callable, Iterator

import jax
from tqdm import tqdm

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.training.metrics import MetricsWriter


def run_training(*, phase: str, step_fn: Callable, state, num_steps: int, iterator: Iterator,
                 to_device: Callable[[dict], dict], key: jax.Array,
                 checkpointer: PhaseCheckpointer, writer: MetricsWriter, log_every: int,
                 checkpoint_every: int, extra_args: tuple = (), frozen=None,
                 meta: dict | None = None, show_progress: bool = True):
    """Runs `step_fn(state, *extra_args, batch, key)` from state.step to num_steps."""
    start = int(jax.device_get(state.step))
    writer.truncate_after(start)
    bar = tqdm(total=num_steps, initial=start, desc=phase, unit="step", mininterval=2.0,
               disable=not show_progress, dynamic_ncols=True)
    last_time, last_step = time.perf_counter(), start
    for step in range(start, num_steps):
        batch = to_device(next(iterator))
        state, metrics = step_fn(state, *extra_args, batch, jax.random.fold_in(key, step))
        done = step + 1
        bar.update(1)
        if done % log_every == 0 or done == num_steps:
            metrics = jax.device_get(metrics)
            now = time.perf_counter()
            metrics["steps_per_sec"] = (done - last_step) / max(now - last_time, 1e-9)
            last_time, last_step = now, done
            writer.write(done, metrics)
            bar.set_postfix(loss=f"{float(metrics['loss']):.4f}")
        if done % checkpoint_every == 0 or done == num_steps:
            checkpointer.save(done, state, frozen=frozen, iterator=iterator, meta=meta)
    bar.close()
    return state
