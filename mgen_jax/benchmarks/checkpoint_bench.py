"""`mgen bench checkpoint`: what a checkpoint costs the training loop, written synchronously vs
asynchronously (Orbax's background thread, train.async_checkpoints), in one process.

The step is the real DiT train step of experiments/quickstart.py (cached text embeddings, the
state donated, 1-device mesh), checkpointed by the training's PhaseCheckpointer. Each window runs
`steps` steps, blocking on every step so each time is its own, and checkpoints the state and the
data position after step `checkpoint_at`; windows alternate sync and async `repeats` times. Per
mode (medians over windows):

  * median step seconds of the steps away from the checkpoint;
  * the checkpoint step's seconds (its step plus what `save` blocks for);
  * the steps right after it (an asynchronous write shares the CPU / host bandwidth with them);
  * the window's total, including the wait for a write still pending at its end.

Models: `quickstart` (its tiny DiT, batch 8) and, unless --quick, `wide`: the quickstart's DiT
at width 1024 x 2 layers on the same tiny latents, a few hundred MB of train state (parameters
and two Adam moments in fp32) whose write takes visible time, with little compute per step.

    mgen bench checkpoint [--json=F] [--quick]
"""
import os
import statistics
import tempfile
import time

import grain
import jax
import numpy as np

from mgen_jax.benchmarks.matmul_peak import machine_info
from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.tae import latent_frames, spatial_compression
from mgen_jax.models.builders import build_dit
from mgen_jax.models.text.text_inputs import cached_text_example, placeholder_nulls
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import (batch_shardings, init_train_state,
                                                jit_train_step, to_device_batch,
                                                train_state_shardings)

_QUICKSTART = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "quickstart.py")
_ONE_DEVICE = ("mesh.data=1", "mesh.fsdp=1", "mesh.context=1", "mesh.tensor=1")

MODELS = {
    "quickstart": dict(overrides=("dit_train.batch_size=8",), steps=10, checkpoint_at=4,
                       repeats=3),
    "wide": dict(overrides=("dit_train.batch_size=8", "dit.width=1024", "dit.depth=2",
                            "dit.num_heads=8", "dit.mlp_dim=2816", "dit.scan_unroll=1"),
                 steps=10, checkpoint_at=3, repeats=2),
}
QUICK = {"quickstart": dict(MODELS["quickstart"], steps=6, checkpoint_at=2, repeats=1)}


def _batch(cfg, batch_size: int) -> dict:
    s = spatial_compression(cfg.tae)
    latent = (batch_size, latent_frames(cfg.tae, cfg.data.frames), cfg.data.height // s,
              cfg.data.width // s, cfg.tae.z_channels)
    rng = np.random.default_rng(0)
    return {"latent_mean": rng.normal(size=latent).astype(np.float32),
            "latent_logvar": np.full(latent, -4.0, np.float32),
            **cached_text_example(cfg.text, batch_size, seed=0)}


class _Step:
    """The compiled DiT train step of cfg and a fresh train state for each window."""

    def __init__(self, cfg):
        mesh = build_mesh(cfg.mesh, devices=jax.devices()[:1])
        rules = rules_from_preset(cfg.mesh.rules)
        self.dit = build_dit(cfg)
        optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
        null_text, null_mask = placeholder_nulls(cfg.text)
        step_fn = make_dit_train_step_on_embeddings(
            self.dit, optimizer, flow_cfg=cfg.flow, latent_shift=cfg.tae.latent_shift,
            latent_scale=cfg.tae.latent_scale, null_text=null_text, null_mask=null_mask)
        self.state_sh = train_state_shardings(self.dit, optimizer, mesh, rules)
        host = _batch(cfg, cfg.dit_train.batch_size)
        batch_sh = batch_shardings(mesh, rules, host)
        self.batch = to_device_batch(host, batch_sh)
        self.init = lambda: init_train_state(self.dit, optimizer, jax.random.key(cfg.seed),
                                             self.state_sh)
        self.step = jit_train_step(step_fn, mesh, rules, self.state_sh, batch_sh)

    def __call__(self, state, i: int):
        return self.step(state, self.batch, jax.random.key(i))


def _window(step: _Step, directory: str, *, asynchronous: bool, steps: int,
            checkpoint_at: int) -> dict:
    ckpt = PhaseCheckpointer(directory, keep=1, asynchronous=asynchronous)
    # A real data position to save with the state (the loop always saves one).
    data = iter(grain.MapDataset.range(10_000).shuffle(seed=0).batch(8).to_iter_dataset())
    state = step.init()
    for i in range(2):  # warm: compiled, caches hot
        state, _ = step(state, i)
    jax.block_until_ready(state)
    times, save_blocking = [], None
    window_start = time.perf_counter()
    for i in range(1, steps + 1):
        start = time.perf_counter()
        next(data)
        state, metrics = step(state, i)
        jax.block_until_ready((state, metrics))
        if i == checkpoint_at:
            save_start = time.perf_counter()
            ckpt.save(i, state, iterator=data, meta={"bench": True})
            save_blocking = time.perf_counter() - save_start
        times.append(time.perf_counter() - start)
    wait_start = time.perf_counter()
    ckpt.wait()
    final_wait = time.perf_counter() - wait_start
    window = time.perf_counter() - window_start
    ckpt.close()
    k = checkpoint_at - 1
    return {"step_seconds_all": times,
            "median_step_seconds": statistics.median(times[:k] + times[k + 3:]),
            "checkpoint_step_seconds": times[k],
            "save_blocking_seconds": save_blocking,
            "next_steps_seconds": times[k + 1:k + 3],
            "final_wait_seconds": final_wait,
            "window_seconds": window}


def _median_of(windows: list[dict]) -> dict:
    keys = ("median_step_seconds", "checkpoint_step_seconds", "save_blocking_seconds",
            "final_wait_seconds", "window_seconds")
    out = {k: statistics.median(w[k] for w in windows) for k in keys}
    out["next_steps_seconds"] = [statistics.median(s) for s in
                                 zip(*(w["next_steps_seconds"] for w in windows))]
    out["windows"] = windows
    return out


def bench_model(overrides, *, steps: int, checkpoint_at: int, repeats: int) -> dict:
    cfg = load_config(os.path.normpath(_QUICKSTART), (*_ONE_DEVICE, *overrides))
    step = _Step(cfg)
    state_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize
                      for a in jax.tree.leaves(jax.eval_shape(step.init)))
    runs = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for mode in ("sync", "async"):
                runs[mode].append(_window(step, os.path.join(tmp, f"{mode}{r}"),
                                          asynchronous=mode == "async", steps=steps,
                                          checkpoint_at=checkpoint_at))
    sync, async_ = _median_of(runs["sync"]), _median_of(runs["async"])
    d = cfg.dit
    return {
        "shape": f"DiT width {d.width}, depth {d.depth}, mlp {d.mlp_dim}, batch "
                 f"{cfg.dit_train.batch_size} (experiments/quickstart.py + {list(overrides)})",
        "num_params": step.dit.num_params(),
        "train_state_mb": state_bytes / 2**20,
        "steps_per_window": steps, "checkpoint_after_step": checkpoint_at, "repeats": repeats,
        "sync": sync, "async": async_,
        "checkpoint_step_ratio (async / sync)": (async_["checkpoint_step_seconds"]
                                                 / sync["checkpoint_step_seconds"]),
        "checkpoint_overhead_seconds (sync, async)": [
            sync["checkpoint_step_seconds"] - sync["median_step_seconds"],
            async_["checkpoint_step_seconds"] - async_["median_step_seconds"]],
        "window_ratio (async / sync)": async_["window_seconds"] / sync["window_seconds"],
    }


def checkpoint_bench(quick: bool = False) -> dict:
    machine = machine_info()
    models = {name: bench_model(**spec) for name, spec in (QUICK if quick else MODELS).items()}
    summary = {}
    for name, m in models.items():
        summary[name] = {
            "train_state_mb": m["train_state_mb"],
            "median_step_s (sync, async)": [m["sync"]["median_step_seconds"],
                                            m["async"]["median_step_seconds"]],
            "checkpoint_step_s (sync, async)": [m["sync"]["checkpoint_step_seconds"],
                                                m["async"]["checkpoint_step_seconds"]],
            "checkpoint_step_ratio (async / sync)": m["checkpoint_step_ratio (async / sync)"],
            "window_ratio (async / sync)": m["window_ratio (async / sync)"],
        }
    machine["load_average_1m_end"] = machine_info()["load_average_1m"]
    return {
        "benchmark": "checkpoint",
        "quick": quick,
        "summary": summary,
        "machine": machine,
        "models": models,
        "note": "every step is blocked on, so each time is its own; the checkpoint step "
                "includes what save() blocks for (sync: the whole write; async: the copy off "
                "the device, the data position and the directory set-up); the write of an "
                "asynchronous save overlaps the next steps and any rest is waited for at the "
                "window's end (final_wait_seconds, part of window_seconds)",
    }
