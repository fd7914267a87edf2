"""A sweep file: `experiments/sweeps/NAME.py` defines `get_sweep()` (or `get_sweep(arg)` for
`NAME.py:ARG`) returning a dict / ConfigDict of the keys of `sweep_defaults()`:

    base          the experiment every run starts from, `experiments/NAME.py[:ARG]`
    overrides     `key=value` config overrides of every run (the CLI's --config.K=V add to them)
    mode          train: each run is a whole `mgen train` (+ its eval) in its own workdir;
                  sample: one base workdir is trained once, each run only evaluates it with
                  other sampling keys (eval.*, flow's sampling keys) into its own folder
    axes          nested like the config, each leaf a tuple of values:
                  dict(eval=dict(guidance_scale=(1.0, 5.0)))  ->  eval.guidance_scale
    combine       product (every combination) | zip (the i-th value of every axis together)
    metrics       columns of the results table: `eval/<dotted key of eval.json>`,
                  `model/<dotted key of model.json>` (dit.params, dit.train_flops_per_token), or
                  `<phase>/<key>` for the last value of key in that phase's metrics.jsonl lines
    x_axis        the axis the metric plots use as their x (default: the only axis)
    base_workdir  mode=sample: an already trained workdir to reuse instead of training one

`--sweep.KEY=VALUE` on the command line overrides any of them, e.g.
`--sweep.axes.eval.guidance_scale=(1.0,7.5)`.
"""
import os

import ml_collections

from mgen_jax.configs.loading import apply_override, import_python_file
from mgen_jax.configs.validation import ConfigError

MODES = {"train": "every run trains (mgen train, then its evaluation) in its own workdir",
         "sample": "one trained base workdir; every run evaluates it with other sampling keys"}
COMBINES = ("product", "zip")
# What a sampling-only run may change: the evaluation's keys and how the sampler integrates.
# Anything else would need the model retrained.
SAMPLING_PREFIXES = ("eval.",)
SAMPLING_KEYS = ("flow.sample_steps", "flow.sampler", "flow.schedule", "flow.lq_reference_steps",
                 "flow.guidance_scale")
EVAL_SOURCE = "eval"  # metrics `eval/<key>` read eval.json; any other source is a metrics phase
MODEL_SOURCE = "model"  # metrics `model/<key>` read model.json (e.g. model/dit.params)


class SweepError(ValueError):
    """A sweep that cannot run; the message names the sweep key or run that is wrong."""


def sweep_defaults() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        base="", overrides=(), mode="train", axes={}, combine="product",
        metrics=(), x_axis="", base_workdir=""))


def is_sampling_key(key: str) -> bool:
    return key.startswith(SAMPLING_PREFIXES) or key in SAMPLING_KEYS


def flat_axes(axes, prefix: str = "") -> dict:
    """{dotted config key: tuple of values} of the nested axes (ConfigDict order: sorted)."""
    out = {}
    for key in axes.keys():
        value, name = axes[key], f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            out.update(flat_axes(value, name + "."))
        else:
            out[name] = value
    return out


def _import_sweep_file(spec: str):
    path, _, arg = spec.partition(":")
    module = import_python_file(path, kind="sweep", function="get_sweep", error=SweepError)
    returned = module.get_sweep(arg) if arg else module.get_sweep()
    if not isinstance(returned, (dict, ml_collections.ConfigDict)):
        raise SweepError(f"{path}: get_sweep() returned a {type(returned).__name__}, expected a "
                         "dict or ConfigDict of the keys " + ", ".join(sweep_defaults().keys()))
    return path, returned


def load_sweep(spec: str, sweep_overrides=(), config_overrides=()) -> ml_collections.ConfigDict:
    """The validated sweep of `spec` (`path.py[:arg]`), with `KEY=VALUE` overrides of its keys
    applied and `config_overrides` appended to its config overrides."""
    path, returned = _import_sweep_file(spec)
    sweep = sweep_defaults()
    given = returned.to_dict() if isinstance(returned, ml_collections.ConfigDict) else returned
    unknown = sorted(set(given) - set(sweep.keys()))
    if unknown:
        raise SweepError(f"{path}: unknown sweep keys {unknown}; a sweep has "
                         + ", ".join(sweep.keys()))
    with sweep.ignore_type():
        for key, value in given.items():
            sweep[key] = value
    for assignment in sweep_overrides:
        try:
            apply_override(sweep, assignment)
        except ConfigError as err:
            raise SweepError(f"--sweep.{assignment}: {str(err).replace('config key', 'sweep key')}"
                             ) from None
    with sweep.ignore_type():
        sweep.overrides = tuple(sweep.overrides) + tuple(config_overrides)
    return validate_sweep(sweep, path)


def _require(ok: bool, key: str, what: str, path: str) -> None:
    if not ok:
        raise SweepError(f"{path}: sweep.{key}: {what}")


def validate_sweep(sweep: ml_collections.ConfigDict,
                   path: str = "sweep") -> ml_collections.ConfigDict:
    """The sweep itself (its runs' configs are checked by runs.check_run_configs)."""
    _require(isinstance(sweep.base, str) and sweep.base, "base",
             "name the base experiment, e.g. 'experiments/quickstart.py'", path)
    base_file = sweep.base.partition(":")[0]
    _require(os.path.isfile(base_file), "base", f"experiment file {base_file!r} does not exist",
             path)
    _require(sweep.mode in MODES, "mode", f"{sweep.mode!r} unknown; choose one of "
             + ", ".join(MODES), path)
    _require(sweep.combine in COMBINES, "combine", f"{sweep.combine!r} unknown; choose one of "
             + ", ".join(COMBINES), path)
    _require(isinstance(sweep.overrides, (tuple, list)) and all(
        isinstance(o, str) and "=" in o for o in sweep.overrides), "overrides",
        f"{sweep.overrides!r}: expected a tuple of 'key=value' strings", path)
    _require(isinstance(sweep.axes, (ml_collections.ConfigDict, dict)), "axes",
             "expected a nested dict, e.g. dict(eval=dict(guidance_scale=(1.0, 5.0)))", path)
    axes = flat_axes(sweep.axes)
    _require(bool(axes), "axes", "no axis to sweep; give at least one key with its values", path)
    for key, values in axes.items():
        _require(isinstance(values, (tuple, list)) and len(values) > 0, f"axes.{key}",
                 f"{values!r}: expected a non-empty tuple of values", path)
        _require(len(set(map(repr, values))) == len(values), f"axes.{key}",
                 f"{values!r} repeats a value", path)
    lengths = {key: len(values) for key, values in axes.items()}
    _require(sweep.combine != "zip" or len(set(lengths.values())) == 1, "axes",
             f"combine='zip' needs axes of one length; got {lengths}", path)
    if not sweep.x_axis and len(axes) == 1:
        sweep.x_axis = next(iter(axes))
    _require(sweep.x_axis in axes, "x_axis", f"{sweep.x_axis!r} is not an axis; choose one of "
             + ", ".join(axes), path)
    _require(isinstance(sweep.metrics, (tuple, list)), "metrics",
             "expected a tuple of 'eval/<key>' or '<phase>/<key>' strings", path)
    for metric in sweep.metrics:
        source, _, key = str(metric).partition("/")
        _require(isinstance(metric, str) and source and key, "metrics",
                 f"{metric!r}: expected 'eval/<dotted key of eval.json>' or '<phase>/<key>' "
                 "(the last value logged in metrics.jsonl), e.g. 'eval/accuracy.all', 'dit/loss'",
                 path)
    if sweep.mode == "sample":
        retraining = [key for key in axes if not is_sampling_key(key)]
        _require(not retraining, "axes", f"{retraining} would need retraining: a sample sweep "
                 "only changes sampling keys (eval.*, " + ", ".join(SAMPLING_KEYS)
                 + "); use mode='train'", path)
        if sweep.base_workdir:
            fixed = [o for o in sweep.overrides if not is_sampling_key(o.partition("=")[0])]
            _require(not fixed, "overrides", f"{fixed}: base_workdir is already trained, so the "
                     "overrides may only change sampling keys", path)
    else:
        _require(not sweep.base_workdir, "base_workdir", "only a mode='sample' sweep reuses a "
                 "trained workdir", path)
    return sweep


def split_sweep_flags(extra: list[str]) -> list[str]:
    """`KEY=VALUE` of every `--sweep.KEY=VALUE` (or `--sweep.KEY VALUE`) in argv leftovers;
    anything else is an unknown flag."""
    out, i = [], 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--sweep."):
            raise SweepError(f"unrecognized argument {arg!r} (sweep keys are set with "
                             "--sweep.KEY=VALUE)")
        body = arg[len("--sweep."):]
        if "=" not in body:
            if i + 1 >= len(extra):
                raise SweepError(f"{arg} needs a value")
            body, i = f"{body}={extra[i + 1]}", i + 1
        out.append(body)
        i += 1
    return out
