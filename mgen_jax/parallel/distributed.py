"""Multi-process jobs: joining the JAX distributed system, which process writes shared files,
barriers between processes, and leaving the system at the end.

Every per-process decision of the package goes through here, so a reader finds in one file what
process 0 does that the others do not. One process (the default) makes all of it a no-op.

Where the processes come from, first match wins:
  1. explicit arguments (`mgen train --coordinator=HOST:PORT --num_processes=N --process_id=I`);
  2. the environment: MGEN_COORDINATOR, MGEN_NUM_PROCESSES, MGEN_PROCESS_ID;
  3. a multi-host TPU slice (its runtime sets TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES, or
     MEGASCALE_COORDINATOR_ADDRESS on multislice): JAX detects everything itself;
  4. otherwise one process.
A coordinator of "auto" asks JAX to detect the cluster (TPU, Slurm, Open MPI) itself.
"""
import itertools
import os

import jax
import jax.extend.backend
from orbax.checkpoint import multihost as orbax_multihost

ENV_COORDINATOR = "MGEN_COORDINATOR"
ENV_NUM_PROCESSES = "MGEN_NUM_PROCESSES"
ENV_PROCESS_ID = "MGEN_PROCESS_ID"
AUTO = "auto"

# Set by the TPU runtime on every host of a multi-host slice: a comma-separated host list.
TPU_HOSTS_ENV = ("TPU_PROCESS_ADDRESSES", "TPU_WORKER_HOSTNAMES")
MULTISLICE_ENV = "MEGASCALE_COORDINATOR_ADDRESS"

# How long a barrier waits for the slowest process (process 0 may be writing a dataset or
# encoding latents meanwhile).
BARRIER_TIMEOUT_S = 3 * 3600
# Every process passes the same barriers in the same order: a running count makes each
# barrier's key unique, as the coordination service wants, even when a name repeats.
_barrier_count = itertools.count()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def on_tpu_pod() -> bool:
    """A multi-host TPU slice (or several): its runtime lists more than one host."""
    if os.environ.get(MULTISLICE_ENV):
        return True
    return any(len([h for h in os.environ.get(name, "").split(",") if h.strip()]) > 1
               for name in TPU_HOSTS_ENV)


def resolve_processes(coordinator: str | None = None, num_processes: int | None = None,
                      process_id: int | None = None) -> dict:
    """Which multi-process setup the arguments and environment ask for, without starting it:
    {"source": "flags" | "env" | "tpu" | "single", "coordinator", "num_processes", "process_id"}.
    Each argument left None falls back to its environment variable."""
    given = (coordinator, num_processes, process_id)
    source = "flags" if any(v is not None for v in given) else None
    coordinator = coordinator if coordinator is not None else os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if source is None and any(v is not None for v in (coordinator, num_processes, process_id)):
        source = "env"
    if coordinator == AUTO:
        return {"source": source, "coordinator": AUTO, "num_processes": num_processes,
                "process_id": process_id}
    if coordinator is None and num_processes in (None, 1) and process_id in (None, 0):
        if on_tpu_pod():
            return {"source": "tpu", "coordinator": AUTO, "num_processes": None,
                    "process_id": None}
        return {"source": "single", "coordinator": None, "num_processes": 1, "process_id": 0}
    if coordinator is None or num_processes is None or process_id is None:
        raise ValueError(
            "a multi-process run needs all of coordinator (HOST:PORT of process 0), "
            f"num_processes and process_id (flags or {ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, "
            f"{ENV_PROCESS_ID}); got coordinator={coordinator!r}, num_processes={num_processes!r}, "
            f"process_id={process_id!r}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(f"process_id {process_id} is not in [0, num_processes={num_processes})")
    return {"source": source, "coordinator": coordinator, "num_processes": num_processes,
            "process_id": process_id}


def initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> dict:
    """Join the JAX distributed system as resolve_processes() says (a no-op for one process or
    when already joined). Call before anything touches a JAX device. Returns the resolved
    setup, with num_processes and process_id as JAX reports them once joined."""
    setup = resolve_processes(coordinator, num_processes, process_id)
    if setup["source"] == "single" or jax.distributed.is_initialized():
        return setup
    # CPU processes reduce across each other through gloo; keep an implementation already
    # chosen (JAX_CPU_COLLECTIVES_IMPLEMENTATION=mpi), set one where this JAX has no default.
    if not jax.config.jax_cpu_collectives_implementation:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if setup["coordinator"] == AUTO:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(setup["coordinator"], setup["num_processes"],
                                   setup["process_id"])
    return dict(setup, num_processes=jax.process_count(), process_id=jax.process_index())


def is_coordinator() -> bool:
    """Process 0: the one that writes a job's shared files (config, data, metrics, reports)."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Wait until every process reaches the barrier `name` (a no-op for one process).

    Through the coordination service (Orbax's barrier function), not a device collective: on
    CPU a collective's first run opens a gloo context that waits only 30 s for the other
    processes, too short when one of them is still writing data or compiling."""
    if jax.process_count() > 1:
        key = f"{next(_barrier_count)}: {name}"
        orbax_multihost.get_barrier_sync_fn()(key=key, timeout_ms=int(timeout_s * 1000))


def compile_together(fn, *args, name: str) -> None:
    """Before the first run of a jitted multi-process program: compile it here (jit's cache
    keeps the executable for the call that follows), then wait for every process to have done
    the same. Processes compile at different speeds; without this the fastest one starts the
    program's collectives while another is still compiling, and on CPU gloo gives up after
    30 s. A no-op for one process or a function that is not jitted."""
    if jax.process_count() > 1 and hasattr(fn, "lower"):
        fn.lower(*args).compile()
        barrier(f"compiled: {name}")


class CompiledTogether:
    """A jitted function whose first call goes through compile_together (every later call is
    the function's own); anything else (`.lower`, ...) is the function's."""

    def __init__(self, fn, name: str):
        self.fn, self.name, self.compiled = fn, name, False

    def __call__(self, *args):
        if not self.compiled:
            compile_together(self.fn, *args, name=self.name)
            self.compiled = True
        return self.fn(*args)

    def __getattr__(self, attr):
        return getattr(self.fn, attr)


def continue_alone() -> bool:
    """End a multi-process job's shared part so process 0 can go on by itself (the evaluation
    after training): every process leaves the distributed system together (its shutdown waits
    for all), then process 0 reopens JAX on its own local devices. True for the process that
    should go on: process 0, where its platform can reopen alone (CPU; an accelerator slice
    cannot run one host's chips without the others); False for every other process.
    One process: True, nothing changes."""
    if jax.process_count() == 1:
        return True
    coordinator, platform = is_coordinator(), jax.default_backend()
    jax.distributed.shutdown()
    if not coordinator or platform != "cpu":
        return False
    jax.extend.backend.clear_backends()  # the joined system's devices: reopened as this host's
    jax.clear_caches()
    return True
