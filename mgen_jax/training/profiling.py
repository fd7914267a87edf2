"""A jax.profiler trace of a configured range of training steps (`<phase>_train.profile_steps`),
written to <workdir>/profile/<phase>/ for TensorBoard's profile plugin or Perfetto. Each step runs
under a StepTraceAnnotation so the trace viewer splits the timeline by step."""
import contextlib
import os

import jax


class StepProfiler:
    def __init__(self, steps, logdir: str):
        """steps: (first, last) 1-based step numbers, or empty for no trace."""
        steps = tuple(steps)
        if steps and (len(steps) != 2 or not 1 <= steps[0] <= steps[1]):
            raise ValueError(f"profile_steps {steps} must be (first, last) with 1 <= first <= last")
        self.first, self.last = steps if steps else (None, None)
        self.logdir = logdir
        self.active = False

    def step(self, number: int, phase: str):
        """Context for running step `number` (1-based): starts the trace at `first`."""
        if self.first is not None and number == self.first and not self.active:
            os.makedirs(self.logdir, exist_ok=True)
            jax.profiler.start_trace(self.logdir)
            self.active = True
        if self.active:
            return jax.profiler.StepTraceAnnotation(phase, step_num=number)
        return contextlib.nullcontext()

    def after(self, number: int, state) -> None:
        """Stops the trace once step `last` has finished on the devices."""
        if self.active and number >= self.last:
            jax.block_until_ready(state)
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
