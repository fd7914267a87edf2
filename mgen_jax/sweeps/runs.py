"""A sweep's runs: one override set each, named after its values so that the same sweep always
gives the same folder names (which is what lets a re-invoked sweep find its finished runs)."""
import dataclasses
import hashlib
import itertools
import json
import re

from mgen_jax.configs.loading import apply_override, load_config
from mgen_jax.configs.validation import ConfigError, validate
from mgen_jax.sweeps.spec import SweepError, flat_axes
from mgen_jax.workdir import load_workdir_config

MAX_NAME = 100  # longer names are cut and keep a hash of the whole: folder names stay short
BASE_RUN = "base"  # mode=sample: the workdir trained once for every run (names never clash:
#                   a run's name always holds key-value)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    values: tuple  # ((dotted config key, value), ...) in the sweep's axis order

    @property
    def assignments(self) -> tuple[str, ...]:
        """The run's `key=value` config overrides, as `--config.` takes them."""
        return tuple(f"{key}={format_value(value)}" for key, value in self.values)


def format_value(value) -> str:
    """A value as configs/loading.py parses overrides: strings bare, the rest as literals."""
    return value if isinstance(value, str) else repr(value)


def _slug(value) -> str:
    if isinstance(value, (tuple, list)):
        return "x".join(_slug(v) for v in value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def run_name(values) -> str:
    """`leaf-value` per axis joined by '_', e.g. guidance_scale-7.5 or width-64_mlp_dim-176; a
    leaf two axes share keeps its whole dotted key (dit.width-64_tae.width-32)."""
    leaves = [key.rpartition(".")[2] for key, _ in values]
    parts = [f"{leaf if leaves.count(leaf) == 1 else key}-{_slug(value)}"
             for leaf, (key, value) in zip(leaves, values)]
    name = "_".join(parts)
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9]}-{digest}"
    return name


def axis_order(sweep) -> list[str]:
    """The x axis first, then the others (sorted, as ConfigDict keeps them)."""
    keys = list(flat_axes(sweep.axes))
    return [sweep.x_axis] + [k for k in keys if k != sweep.x_axis]


def expand_runs(sweep) -> list[Run]:
    """Every run of the sweep, in order (the product's last axis varies fastest)."""
    axes = flat_axes(sweep.axes)
    keys = axis_order(sweep)
    columns = [axes[k] for k in keys]
    combos = itertools.product(*columns) if sweep.combine == "product" else zip(*columns)
    runs, seen = [], {}
    for combo in combos:
        values = tuple(zip(keys, combo))
        name = run_name(values)
        if name in seen:
            raise SweepError(f"runs {dict(seen[name])} and {dict(values)} would share the folder "
                             f"{name!r}; make the values differ in how they print")
        seen[name] = values
        runs.append(Run(name, values))
    return runs


def config_json(cfg) -> dict:
    """A config as its workdir's config.json holds it (to compare with one on disk)."""
    return json.loads(cfg.to_json_best_effort(sort_keys=True))


def run_config(sweep, run: Run):
    """The validated config `run` trains or samples with (ConfigError names a bad key).

    mode=sample with base_workdir: the trained workdir's config with the sampling overrides."""
    assignments = tuple(sweep.overrides) + run.assignments
    if sweep.mode == "sample" and sweep.base_workdir:
        cfg = load_workdir_config(sweep.base_workdir)
        for assignment in assignments:
            apply_override(cfg, assignment)
        return validate(cfg)
    return load_config(sweep.base, assignments)


def check_run_configs(sweep, runs) -> dict:
    """{run name: its config as config.json holds it}; every run's config is built and validated
    before anything runs, so a bad value fails the sweep at once, naming the run."""
    out = {}
    for run in runs:
        try:
            out[run.name] = config_json(run_config(sweep, run))
        except ConfigError as err:
            raise SweepError(f"run {run.name}: {err}") from None
    return out
