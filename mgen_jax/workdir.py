"""A training workdir: the config it belongs to and where each phase keeps its files.

    <workdir>/config.json            the resolved config (a workdir belongs to one config)
    <workdir>/data/                  the dataset the job wrote (unless data.dir points elsewhere)
    <workdir>/text_cache/            cached text embeddings (text.precompute=True)
    <workdir>/latents/               TAE latents + text fields, precomputed once
    <workdir>/checkpoints/<phase>/   Orbax checkpoints of one phase (tae, dit)
    <workdir>/metrics.jsonl, tensorboard/, eval/, eval.json
    <workdir>/samples/<phase>/<step>/ videos sampled while training (<phase>_train.sample_every)
    <workdir>/profile/<phase>/       jax.profiler traces (<phase>_train.profile_steps)
    <workdir>/timings.json           wall seconds of each phase of the last run that did it
    <workdir>/model.json             what the trained models are: DiT size, parameters, analytic
                                     train FLOPs per token (read by `mgen sweep` tables)

A leaf: it imports nothing from the package, so every layer (training writes a workdir,
inference and evaluation read one, the CLI checks one) may use it.
"""
import contextlib
import json
import os
import time

import ml_collections

CONFIG_FILE = "config.json"
TIMINGS_FILE = "timings.json"


class WorkdirError(ValueError):
    """A workdir that cannot be used as asked; the message names the folder and what is wrong."""


def config_path(workdir: str) -> str:
    return os.path.join(workdir, CONFIG_FILE)


def data_dir(cfg, workdir: str) -> str:
    return cfg.data.dir or os.path.join(workdir, "data")


def text_cache_dir(workdir: str) -> str:
    return os.path.join(workdir, "text_cache")


def latents_dir(workdir: str) -> str:
    return os.path.join(workdir, "latents")


def audio_latents_dir(workdir: str) -> str:
    """The audio job's DAC-VAE latents with per-frame visual features."""
    return os.path.join(workdir, "audio_latents")


def checkpoint_dir(workdir: str, phase: str) -> str:
    return os.path.join(workdir, "checkpoints", phase)


def samples_dir(workdir: str, phase: str) -> str:
    return os.path.join(workdir, "samples", phase)


def profile_dir(workdir: str, phase: str) -> str:
    return os.path.join(workdir, "profile", phase)


def eval_dir(workdir: str) -> str:
    return os.path.join(workdir, "eval")


def eval_report_path(workdir: str) -> str:
    return os.path.join(workdir, "eval.json")


def _config_json(cfg: ml_collections.ConfigDict) -> dict:
    return json.loads(cfg.to_json_best_effort(sort_keys=True))


def claim_workdir(cfg: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
    """Create the workdir for this config, or check that it already belongs to it: resuming with
    a different config is refused, naming the keys that differ. The file is written atomically.

    write=False (every process of a multi-process job but one) only checks a config.json that
    is already there: one writer per shared file."""
    os.makedirs(workdir, exist_ok=True)
    path, new = config_path(workdir), _config_json(cfg)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise WorkdirError(f"{workdir} was created with a different config (differs in "
                               f"{diff}); use a new --workdir")
        return
    if not write:
        return
    with open(path + ".tmp", "w") as f:
        json.dump(new, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with; a clear error if the folder is not a workdir."""
    if not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir} does not exist (train into it first with "
                           "`mgen train --config=... --workdir=...`)")
    path = config_path(workdir)
    if not os.path.exists(path):
        raise WorkdirError(f"{workdir} holds no {CONFIG_FILE}: not an mgen training workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(_lists_to_tuples(json.load(f)))


def _lists_to_tuples(d):
    if isinstance(d, dict):
        return {k: _lists_to_tuples(v) for k, v in d.items()}
    return tuple(d) if isinstance(d, list) else d


def timings_path(workdir: str) -> str:
    return os.path.join(workdir, TIMINGS_FILE)


def read_timings(workdir: str) -> dict:
    """{phase: wall seconds} of the phases timed so far ({} before the first)."""
    path = timings_path(workdir)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def phase_timer(workdir: str, phase: str):
    """Time one phase of a job (data, tae, latents, dit, eval) and record its wall seconds in
    <workdir>/timings.json, so the split of a run can be read back after it (a phase that
    resumes or is skipped records the time this run spent on it). Prints one line per phase."""
    start = time.perf_counter()
    yield
    seconds = round(time.perf_counter() - start, 1)
    timings = {**read_timings(workdir), phase: seconds}
    # Every process of a multi-process job times its phases: a file of its own to rename
    # (the last one wins), never another process's half-written one.
    tmp = f"{timings_path(workdir)}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(timings, f, indent=2)
    os.replace(tmp, timings_path(workdir))
    print(f"[{phase}] {seconds:.0f} s")


MODEL_FILE = "model.json"


def model_facts_path(workdir: str) -> str:
    return os.path.join(workdir, MODEL_FILE)


def write_model_facts(workdir: str, model: str, facts: dict) -> None:
    """Record facts about one of the workdir's models ({"dit": {"params": ...}}), atomically."""
    path = model_facts_path(workdir)
    existing = {}
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump({**existing, model: facts}, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
