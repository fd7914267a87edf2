"""Load `experiments/NAME.py[:arg]` and apply `a.b=v` overrides, ml_collections-style."""
import ast
import importlib.util
import os

import ml_collections

from mgen_jax.configs.registries import (AUDIO_DIT_PRESETS, CLIP_VISION_PRESETS,
                                         DAC_VAE_PRESETS, DIT_PRESETS)
from mgen_jax.configs.registry import RegistryError
from mgen_jax.configs.validation import ConfigError, validate


def import_python_file(path: str, *, kind: str, function: str, error=ConfigError):
    """The module of a Python file named by path (experiments, sweep files), which must define
    `function`; `error(...)` names the `kind` of file when it is missing or lacks it."""
    if not os.path.isfile(path):
        raise error(f"{kind} file {path!r} does not exist")
    name = f"mgen_{kind.replace(' ', '_')}_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, function):
        raise error(f"{kind} file {path!r} defines no {function}()")
    return module


def _import_experiment(path: str):
    return import_python_file(path, kind="config", function="get_config")


def _parse_value(text: str, current):
    """Parse an override with the type of the value it replaces."""
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    if isinstance(current, str):
        return text
    value = ast.literal_eval(text)
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, (tuple, list)) and isinstance(value, (tuple, list)):
        value = type(current)(value)
    if current is not None and not isinstance(value, type(current)):
        raise ValueError(f"{text!r} is a {type(value).__name__}, expected {type(current).__name__}")
    return value


def apply_override(cfg: ml_collections.ConfigDict, assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep:
        raise ConfigError(f"override {assignment!r} is not of the form key=value")
    *parents, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise ConfigError(f"unknown config key {'.'.join(parents[:i + 1])!r}")
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise ConfigError(f"unknown config key {key!r}")
    try:
        value = _parse_value(text, node[leaf])
    except (ValueError, SyntaxError) as err:
        raise ConfigError(f"config key {key!r}: cannot use {text!r}: {err}") from None
    with node.ignore_type():
        node[leaf] = value


# Override keys that name a whole architecture preset (configs/registries.py).
PRESET_KEYS = {"dit.size": DIT_PRESETS, "audio_dit.size": AUDIO_DIT_PRESETS,
               "dac_vae.size": DAC_VAE_PRESETS, "vision.preset": CLIP_VISION_PRESETS}


def load_config(spec: str, overrides=()) -> ml_collections.ConfigDict:
    """spec is `path/to/experiment.py` or `path/to/experiment.py:arg`; returns a validated config."""
    path, _, arg = spec.partition(":")
    cfg = _import_experiment(path).get_config(arg or None)
    # `dit.size=NAME` (and the other preset keys) switches the whole preset first; other
    # overrides then adjust it.
    presets = [a for a in overrides if a.partition("=")[0] in PRESET_KEYS]
    for assignment in presets:
        key, _, name = assignment.partition("=")
        section, field = key.split(".")
        try:
            preset = PRESET_KEYS[key].load(name)
        except RegistryError as err:
            raise ConfigError(f"{key}: {err}") from None
        cfg[section].update(**{field: name}, **preset)
    for assignment in overrides:
        if assignment not in presets:
            apply_override(cfg, assignment)
    return validate(cfg)
