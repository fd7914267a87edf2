"""`mgen average --out=DIR CKPT...`: average the DiT of several training runs into a new
workdir, as Movie Gen averages its fine-tuning runs (moviegen_spec.md §4.1).

Each CKPT is a training workdir (its newest DiT checkpoint) or WORKDIR@STEP. The runs must share
the model: the same job, dit, tae and text configs (the first differing key is named), and the
same latent normalisation (the DiT of each was trained on latents of the same TAE). Each run
contributes its sampling parameters, the EMA when its optimizer kept one, else the raw
parameters (average.json says which), weighted uniformly or by --weights (normalised).

DIR is a workdir that `mgen eval`, `mgen sample` (and a resumed `mgen train`) take unchanged:
    config.json                  the first run's
    checkpoints/tae/             the first run's TAE checkpoints
    checkpoints/dit/<step>/      the first run's checkpoint at its step, params replaced by the
                                 average (and the EMA too when kept, so sampling uses the average);
                                 optimizer state, frozen text encoders, data position and meta
                                 are the first run's, meta["average"] the record below
    average.json                 sources (workdir, step, checkpoint, which params), weights
It is written into a temporary sibling and renamed when complete; an existing DIR holding the
same average is left as it is, any other DIR is refused. One process: the arrays are restored
sharded over the config's mesh of this host's devices."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.checkpointing.averaging import (AveragedSource, average_checkpoints, key_names,
                                              normalized_weights, restore_leaves)
from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.flat import flatten_config
from mgen_jax.models.builders import build_dit, build_text_encoders
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.optimizer import ParamsEmaState, make_optimizer
from mgen_jax.training.sharded_training import abstract_train_state, train_state_shardings
from mgen_jax.training.train_state import TrainState
from mgen_jax.workdir import (CONFIG_FILE, WorkdirError, checkpoint_dir, config_path,
                              load_workdir_config)

AVERAGE_FILE = "average.json"
PHASE = "dit"
# What must agree for the parameters to mean the same thing in every run.
SHARED_CONFIG = ("job", "dit", "tae", "text")
# Latent normalisation of different runs: equal up to float noise, or another TAE's latents.
LATENT_STATS_RTOL = 1e-4


def parse_weights(text: str) -> list[float]:
    """'0.5,0.3,0.2' -> [0.5, 0.3, 0.2]."""
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise ValueError(f"--weights={text!r}: give comma separated numbers, one per "
                         "CKPT") from None


def parse_run(spec: str) -> tuple[str, int | None]:
    """'WORKDIR' -> (WORKDIR, None: its newest step); 'WORKDIR@STEP' -> (WORKDIR, STEP)."""
    path, at, step = spec.rpartition("@")
    if at and step.isdigit() and os.path.isdir(path) and not os.path.isdir(spec):
        return path, int(step)
    return spec, None


class _Run:
    """One CKPT argument resolved: its workdir, config, DiT checkpoint directory, step, meta."""

    def __init__(self, spec: str):
        workdir, step = parse_run(spec)
        self.workdir = os.path.abspath(workdir)
        self.cfg = load_workdir_config(workdir)
        self.directory = checkpoint_dir(self.workdir, PHASE)
        ckpt = PhaseCheckpointer(self.directory) if os.path.isdir(self.directory) else None
        steps = ckpt.all_steps() if ckpt else []
        if not steps:
            raise WorkdirError(f"{workdir} has no {PHASE} checkpoint to average: train it first")
        if step is not None and step not in steps:
            raise WorkdirError(f"{workdir} has no {PHASE} checkpoint at step {step} "
                               f"(steps: {steps})")
        self.step = steps[-1] if step is None else step
        self.meta = ckpt.read_meta(self.step)
        ckpt.close()

    @property
    def label(self) -> str:
        return f"{self.workdir}@{self.step}"


def _config_rows(cfg, key: str) -> dict:
    value = cfg[key]
    return dict(flatten_config(value, key + ".")) if hasattr(value, "keys") else {key: value}


def check_compatible(runs: list) -> None:
    """The runs share the model config and latent normalisation; errors name the first key that
    differs and both values."""
    first = runs[0]
    for run in runs[1:]:
        for key in SHARED_CONFIG:
            mine, theirs = _config_rows(first.cfg, key), _config_rows(run.cfg, key)
            differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            if differing:
                k = differing[0]
                raise ValueError(f"{run.workdir} cannot be averaged with {first.workdir}: config "
                                 f"key {k} differs ({theirs.get(k)!r} vs {mine.get(k)!r}); "
                                 f"the runs must share their {', '.join(SHARED_CONFIG)} configs")
        for stat in ("latent_shift", "latent_scale"):
            a, b = first.meta.get(stat), run.meta.get(stat)
            if a is not None and b is not None and not np.allclose(
                    np.asarray(a), np.asarray(b), rtol=LATENT_STATS_RTOL, atol=0):
                raise ValueError(f"{run.workdir} cannot be averaged with {first.workdir}: its "
                                 f"{stat} {b} differs from {a} (its DiT was trained on another "
                                 "TAE's latents)")


def sampling_subtree(abstract_state: TrainState) -> tuple[tuple[str, ...], str]:
    """Where a TrainState's sampling parameters are saved (key names) and which they are:
    the EMA inside the optimizer state when kept ("ema"), else the parameters ("params")."""
    flat, _ = jax.tree_util.tree_flatten_with_path(
        abstract_state, is_leaf=lambda x: isinstance(x, ParamsEmaState))
    for path, node in flat:
        if isinstance(node, ParamsEmaState):
            return key_names(path) + ("ema_params",), "ema"
    return ("params",), "params"


def _abstract_state(cfg, model, mesh, rules) -> TrainState:
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    return abstract_train_state(model, optimizer,
                                train_state_shardings(model, optimizer, mesh, rules))


def _record(runs, weights, requested, used) -> dict:
    return {"phase": PHASE, "step": runs[0].step,
            "sources": [{"workdir": r.workdir, "step": r.step, "checkpoint": r.directory,
                         "params": u, "weight": w}
                        for r, u, w in zip(runs, used, weights)],
            "weights": weights, "requested_weights": requested,
            "optimizer_state": f"the first run's; params{' and EMA' if used[0] == 'ema' else ''}"
                               " replaced by the average"}


def _same_average(a: dict, b: dict) -> bool:
    keys = ("phase", "step", "weights")
    return all(a.get(k) == b.get(k) for k in keys) and [
        (s["workdir"], s["step"]) for s in a.get("sources", [])] == [
        (s["workdir"], s["step"]) for s in b["sources"]]


def _existing_average(out: str) -> dict | None:
    """The average already in `out`, None when `out` is absent or an empty folder; refuses a
    folder holding anything else."""
    if not os.path.exists(out) or (os.path.isdir(out) and not os.listdir(out)):
        return None
    path = os.path.join(out, AVERAGE_FILE)
    if not os.path.exists(path):
        raise FileExistsError(f"--out={out} exists and holds no {AVERAGE_FILE}: not an average; "
                              "choose a new folder")
    with open(path) as f:
        return json.load(f)


def average_runs(specs: list[str], out: str, weights: list[float] | None = None) -> dict:
    """Average the runs' DiT into the new workdir `out`; returns its average.json record (with
    "out", and "already": True when `out` held this very average)."""
    if len(specs) < 2:
        raise ValueError(f"give at least two checkpoints to average (got {len(specs)})")
    runs = [_Run(spec) for spec in specs]
    out = os.path.abspath(out)
    if any(out == r.workdir for r in runs):
        raise ValueError(f"--out={out} is one of the averaged workdirs: choose a new folder")
    check_compatible(runs)
    normalised = normalized_weights(weights, len(runs))
    first = runs[0]
    cfg = first.cfg
    mesh, rules = build_mesh(cfg.mesh), rules_from_preset(cfg.mesh.rules)
    model = build_dit(cfg)
    target = _abstract_state(cfg, model, mesh, rules)
    located = [sampling_subtree(_abstract_state(r.cfg, model, mesh, rules)) for r in runs]
    record = _record(runs, normalised, weights, [used for _, used in located])
    existing = _existing_average(out)
    if existing is not None:
        if not _same_average(existing, record):
            raise FileExistsError(
                f"--out={out} holds a different average (of "
                f"{[(s['workdir'], s['step']) for s in existing.get('sources', [])]} with weights "
                f"{existing.get('weights')}); choose a new folder")
        return {**existing, "out": out, "already": True}
    tae = checkpoint_dir(first.workdir, "tae")
    if not os.path.isdir(tae):
        raise WorkdirError(f"{first.workdir} has no TAE checkpoint ({tae}), which evaluating and "
                           "sampling the average need")

    sources = [AveragedSource(r.directory, r.step, subtree)
               for r, (subtree, _) in zip(runs, located)]
    averaged = average_checkpoints(sources, target.params, normalised)
    state = _with_params(first, target, averaged)
    frozen = _frozen(first, cfg, mesh)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_workdir(tmp, first, state, frozen, record)
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**record, "out": out}


def _with_params(first: _Run, target: TrainState, averaged) -> TrainState:
    """The first run's TrainState with the average as params (and as EMA when kept); only the
    leaves that are not replaced are read from its checkpoint."""
    ema_at, used = sampling_subtree(target)
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    names = [key_names(p) for p, _ in flat]
    by_name = {key_names(p): a for p, a in jax.tree_util.tree_flatten_with_path(averaged)[0]}

    def replaced(name):
        if name[:1] == ("params",):
            return by_name[name[1:]]
        if used == "ema" and name[:len(ema_at)] == ema_at:
            return jnp.copy(by_name[name[len(ema_at):]])  # a buffer of its own (donation)
        return None

    leaves = [replaced(n) for n in names]
    rest = restore_leaves(first.directory, first.step,
                          {n: a for n, (_, a), v in zip(names, flat, leaves) if v is None})
    return jax.tree_util.tree_unflatten(
        treedef, [rest[n] if v is None else v for n, v in zip(names, leaves)])


def _frozen(first: _Run, cfg, mesh):
    """The first run's frozen text encoders (saved with the DiT unless text.precompute)."""
    if not os.path.isdir(os.path.join(first.directory, str(first.step), "frozen")):
        return None
    abstract = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated(mesh)),
        build_text_encoders(cfg).abstract_params())
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    names = [key_names(p) for p, _ in flat]
    restored = restore_leaves(first.directory, first.step,
                              dict(zip(names, (a for _, a in flat))), item="frozen")
    return jax.tree_util.tree_unflatten(treedef, [restored[n] for n in names])


def _write_workdir(tmp: str, first: _Run, state, frozen, record: dict) -> None:
    os.makedirs(tmp)
    shutil.copyfile(config_path(first.workdir), os.path.join(tmp, CONFIG_FILE))
    shutil.copytree(checkpoint_dir(first.workdir, "tae"), checkpoint_dir(tmp, "tae"),
                    ignore=shutil.ignore_patterns("*.orbax-checkpoint-tmp*"))
    ckpt = PhaseCheckpointer(checkpoint_dir(tmp, PHASE), keep=1)
    ckpt.save(first.step, state, frozen=frozen, meta={**first.meta, "average": record})
    ckpt.close()
    # The first run's data position: a resumed `mgen train` on the average restores it (the
    # step has no other use for it; eval and sample never read it).
    data = os.path.join(first.directory, str(first.step), "data")
    if os.path.isdir(data):
        shutil.copytree(data, os.path.join(checkpoint_dir(tmp, PHASE), str(first.step), "data"))
    with open(os.path.join(tmp, AVERAGE_FILE), "w") as f:
        json.dump(record, f, indent=2)
