"""The generic phase runner: restore-or-init one model's TrainState, jit its step with explicit
shardings, train it to `<phase>_train.steps` with checkpoints, metrics and progress.

Every phase of a job (tae, dit) goes through `train_phase`; a phase whose final checkpoint exists
returns at once, so re-running a killed job resumes where it stopped."""
from typing import Callable

import jax

from data_pipelines.grain_pipeline import holdout_batches, make_train_iterator
from data_pipelines.bucket_batching import bucket_batch_sizes, load_manifest
from data_pipelines.records_pipeline import make_records_iterator, records_holdout_batches
from data_pipelines.records_source import (check_bucket_shapes, selected_buckets,
                                           validation_bucket)
from data_pipelines.sources import prepare_data
from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.checkpointing.stage_init import find_source
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.parallel.distributed import CompiledTogether, barrier, is_coordinator
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.init_from import initial_train_state
from mgen_jax.training.loop import run_training
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.profiling import StepProfiler
from mgen_jax.training.throughput import Throughput, device_peak_flops
from mgen_jax.training.sharded_training import (abstract_train_state, batch_shardings,
                                                jit_train_step, to_device_batch,
                                                train_state_shardings)
from mgen_jax.workdir import checkpoint_dir, claim_workdir, data_dir, profile_dir

# Each phase draws its init and step keys from its own stream of the experiment seed.
PHASE_SEEDS = {"tae": 1, "dit": 2, "dac_vae": 3, "audio_dit": 4}


class JobContext:
    """What every phase of one job shares: config, workdir, mesh and rules, the root key."""

    def __init__(self, cfg, workdir: str, show_progress: bool = True):
        # One progress bar per job, not one per process.
        self.cfg, self.workdir = cfg, workdir
        self.show_progress = show_progress and is_coordinator()
        self.mesh = build_mesh(cfg.mesh)
        self.rules = rules_from_preset(cfg.mesh.rules)
        self.key = jax.random.key(cfg.seed)
        self.data_dir = data_dir(cfg, workdir)

    def phase_key(self, phase: str, stream: int) -> jax.Array:
        """stream 0: parameter init; 1: the per-step keys."""
        return jax.random.fold_in(jax.random.fold_in(self.key, PHASE_SEEDS[phase]), stream)

    def holdout_batches(self, directory: str, batch_size: int, holdout: int, decode) -> list:
        """This process's rows of the fixed validation batches: the records `iterator(...,
        holdout=holdout)` keeps out of training."""
        local = batch_size // jax.process_count()
        where = dict(process_index=jax.process_index(), process_count=jax.process_count())
        if self.cfg.data.source != "records":
            return holdout_batches(directory, holdout=holdout, batch_size=local, decode=decode,
                                   **where)
        bucket = validation_bucket(self.cfg.data, load_manifest(directory))
        return records_holdout_batches(directory, bucket=bucket, holdout=holdout,
                                       batch_size=local, decode=decode, **where)

    def iterator(self, directory: str, batch_size: int, seed: int, decode=None,
                 holdout: int = 0):
        """This process's share of a global batch from a dataset directory (resumable). A built
        dataset (data.source=records, or latents of one) yields batches of one bucket each,
        buckets mixed by data.mixture, batch_size clips each or data.token_budget tokens.
        holdout: records kept out of training (the validation set): the dataset's last, or for
        a built dataset the last of its bucket of the experiment's shape (validation_bucket)."""
        local = batch_size // jax.process_count()
        kwargs = {} if decode is None else {"decode": decode}
        where = dict(process_index=jax.process_index(), process_count=jax.process_count())
        if self.cfg.data.source != "records":
            return make_train_iterator(directory, batch_size=local, seed=seed, holdout=holdout,
                                       **where, **kwargs)
        data = self.cfg.data
        manifest = load_manifest(directory)
        buckets = selected_buckets(data, manifest)
        # A built dataset's held-out clips: the last of the experiment's own bucket.
        held_out = {validation_bucket(data, manifest): holdout} if holdout else None
        chosen = dict(manifest, buckets={n: manifest["buckets"][n] for n in buckets},
                      shards=[s for s in manifest["shards"] if s.get("bucket") in buckets])
        if data.batching == "token_budget":
            sizes = bucket_batch_sizes(chosen, token_budget=data.token_budget // jax.process_count(),
                                       tokens_per_clip=lambda b: dit_tokens(self.cfg, b))
        else:
            sizes = bucket_batch_sizes(chosen, batch_size=local)
        return make_records_iterator(directory, batch_sizes=sizes, seed=seed,
                                     mixture=dict(data.mixture), small_buckets=data.small_buckets,
                                     only_buckets=buckets, holdout=held_out,
                                     **where, **kwargs)


def prepare_workdir(cfg, workdir: str, show_progress: bool = True) -> JobContext:
    """A job's first step: claim the workdir for this config, write cfg.data.source's data
    (skipped when already there), and return the context its phases share.

    Multi-process: process 0 writes the config and the data, the others check and read them
    after a barrier (one writer per shared file)."""
    claim_workdir(cfg, workdir, write=is_coordinator())
    ctx = JobContext(cfg, workdir, show_progress)
    if is_coordinator():
        manifest = prepare_data(cfg.data, ctx.data_dir)
    barrier("workdir: config and data written")
    if not is_coordinator():  # finds process 0's dataset and returns its manifest
        manifest = prepare_data(cfg.data, ctx.data_dir)
    if cfg.data.source == "records":  # shapes the TAE and DiT cannot take fail before training
        check_bucket_shapes(cfg, manifest)
    for phase in PHASE_SEEDS:  # a wrong init_from fails now, not after the phases before it
        if cfg[f"{phase}_train"].init_from:
            find_source(cfg[f"{phase}_train"].init_from, phase, key=f"{phase}_train.init_from")
    return ctx


def dit_tokens(cfg, bucket: dict) -> int:
    """DiT tokens of one clip of a bucket ({frames, height, width} in pixels)."""
    pt, ph, pw = cfg.dit.patch_size
    s = spatial_compression(cfg.tae)
    return (latent_frames(cfg.tae, bucket["frames"]) // pt * (bucket["height"] // s // ph)
            * (bucket["width"] // s // pw))


def train_phase(ctx: JobContext, *, phase: str, model, train_cfg, optimizer_cfg,
                make_step: Callable, iterator, example_batch, frozen=None, frozen_shardings=None,
                meta: dict | None = None, compile_steps: Callable | None = None,
                counts: dict | None = None, make_hooks: Callable | None = None):
    """Restore-or-init, then train `model` to train_cfg.steps; returns (TrainState, frozen).

    make_step(optimizer) -> step_fn(state, [frozen,] batch, key) -> (state, metrics).
    frozen: a pytree passed to every step and saved with the checkpoint (frozen encoders).
    compile_steps(step_fn, jit) -> callable step, for phases that alternate several compiled
    programs (the TAE's image and video steps); default: jit(step_fn).
    counts: {"samples"|"tokens"|"flops": fn(this process's host batch) -> its count} for the
    logged throughput (training/throughput.py; samples default to the batch's rows);
    make_hooks(batch_shardings, frozen) -> loop hooks (validation, samples; training/loop.py)."""
    optimizer = make_optimizer(optimizer_cfg, train_cfg.steps)
    state_sh = train_state_shardings(model, optimizer, ctx.mesh, ctx.rules)
    ckpt = PhaseCheckpointer(checkpoint_dir(ctx.workdir, phase), keep=train_cfg.keep_checkpoints,
                             asynchronous=train_cfg.async_checkpoints, clean_partial=True)
    restored = None
    if ckpt.latest_step() is not None:  # the newest checkpoint that restores (damaged: older)
        abstract_frozen = None
        if frozen is not None:
            abstract_frozen = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), frozen,
                frozen_shardings)
        restored = ckpt.restore_latest_good(
            abstract_train_state(model, optimizer, state_sh), abstract_frozen=abstract_frozen,
            iterator=iterator)
    if restored is not None:
        latest, state, restored_frozen, _ = restored
        frozen = restored_frozen if frozen is not None else None
        print(f"[{phase}] resumed from step {latest}")
    else:
        # Fresh, or from another run's checkpoint (<phase>_train.init_from: stage chaining).
        state = initial_train_state(ctx, phase, model, optimizer, train_cfg, state_sh)
        if train_cfg.steps == 0 and train_cfg.init_from:
            # A stage that reuses its predecessor's model as is (e.g. the same TAE): saved as
            # step 0, so the workdir is whole for `mgen sample` / `mgen eval` and the next stage.
            ckpt.save(0, state, frozen=frozen, iterator=iterator, meta=meta)
            ckpt.wait()
    done = int(jax.device_get(state.step)) >= train_cfg.steps
    # A zero-step stage still runs its hooks' start: its step-0 validation loss is the loss of
    # the model it took over (e.g. an average of fine-tuning runs).
    if done and not (train_cfg.steps == 0 and make_hooks is not None):
        return state, frozen
    batch_sh = batch_shardings(ctx.mesh, ctx.rules, example_batch)
    extra = () if frozen is None else (frozen,)

    def jit(step_fn):  # each program compiled on every process before any process runs it
        return CompiledTogether(
            jit_train_step(step_fn, ctx.mesh, ctx.rules, state_sh, batch_sh,
                           () if frozen is None else (frozen_shardings,)), f"{phase} step")

    step_fn = make_step(optimizer)
    jitted = jit(step_fn) if compile_steps is None else compile_steps(step_fn, jit)
    writer = MetricsWriter(ctx.workdir, phase)
    hooks = tuple(make_hooks(batch_sh, frozen)) if make_hooks is not None else ()
    try:
        state = run_training(
            phase=phase, step_fn=jitted, state=state, num_steps=train_cfg.steps,
            iterator=iterator, to_device=lambda b: to_device_batch(b, batch_sh),
            key=ctx.phase_key(phase, 1), checkpointer=ckpt, writer=writer,
            log_every=train_cfg.log_every, checkpoint_every=train_cfg.checkpoint_every,
            extra_args=extra, frozen=frozen, meta=meta, show_progress=ctx.show_progress,
            preemption_grace_s=train_cfg.preemption_grace_s,
            throughput=phase_throughput(train_cfg, counts),
            profiler=StepProfiler(train_cfg.profile_steps, profile_dir(ctx.workdir, phase)),
            hooks=hooks)
    finally:  # a preemption or error too: the hooks' event files are flushed
        writer.close()
        for hook in hooks:
            hook.close()
    return state, frozen


def phase_throughput(train_cfg, counts: dict | None) -> Throughput:
    """Global samples (and tokens, FLOPs when the phase counts them) per step: this process's
    count x the process count (every process holds an equal share of the global batch)."""
    n = jax.process_count()
    counts = dict(counts or {})
    counts.setdefault("samples", lambda b: len(next(iter(b.values()))))
    scaled = {k: (lambda fn: lambda b: fn(b) * n)(fn) for k, fn in counts.items()}
    return Throughput(**scaled, peak_flops=device_peak_flops(train_cfg.peak_flops_per_device))
