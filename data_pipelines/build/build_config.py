"""The data-build config of `mgen data build`: loaded from a file's get_config(arg) (default
mgen_jax/configs/data_build.py), `--config.KEY=VALUE` overrides applied with the experiment
configs' machinery, then checked here: a build config is not an experiment, so the experiment
validate() does not apply, but a bad key must still fail before any media is read."""
from __future__ import annotations

import importlib.util
import json
import os

import ml_collections

from mgen_jax.configs.data_build import data_build_config
from mgen_jax.configs.loading import apply_override
from mgen_jax.configs.validation import ConfigError

STORES = ("frames", "encoded")
BUCKET_KINDS = ("video", "image")
BUCKET_KEYS = {"name", "kind", "frames", "height", "width", "seconds"}
OPTIONAL_BUCKET_KEYS = {"fps"}  # a video bucket's own rate (default: target_fps)


def load_build_config(spec: str | None = None, overrides=()) -> ml_collections.ConfigDict:
    """spec: `path/to/file.py[:arg]` defining get_config(arg), or None for the default."""
    if spec is None:
        cfg = data_build_config()
    else:
        path, _, arg = spec.partition(":")
        if not os.path.isfile(path):
            raise ConfigError(f"data-build config file {path!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(
            "mgen_data_build_" + os.path.splitext(os.path.basename(path))[0], path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        if not hasattr(module, "get_config"):
            raise ConfigError(f"data-build config file {path!r} defines no get_config(arg)")
        cfg = module.get_config(arg or None)
    for assignment in overrides:
        apply_override(cfg, assignment)
    return validate_build_config(cfg)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """Rebuild a config shipped to Beam workers as JSON (a plain string pickles anywhere)."""
    return ml_collections.ConfigDict(json.loads(text))


def config_to_dict(cfg) -> dict:
    return json.loads(cfg.to_json(sort_keys=True))


def validate_build_config(cfg) -> ml_collections.ConfigDict:
    """Unknown keys and impossible values raise ConfigError naming the key."""
    schema = data_build_config()
    for key in cfg.keys():
        if key not in schema:
            raise ConfigError(f"unknown data-build config key {key!r} (known: "
                              f"{', '.join(sorted(schema.keys()))})")
    for key in schema.keys():
        if key not in cfg:
            raise ConfigError(f"data-build config has no key {key!r}")

    def check(ok, key, why):
        if not ok:
            raise ConfigError(f"config key {key!r} = {_value(cfg, key)!r}: {why}")

    for key in ("target_fps", "tfds_fps", "max_seconds"):
        check(cfg[key] > 0, key, "must be > 0")
    for key in ("min_seconds", "trim_seconds", "scene_threshold", "min_motion", "min_width",
                "min_height", "max_hamming", "shapes_clips", "shapes_images"):
        check(cfg[key] >= 0, key, "must be >= 0")
    check(cfg.min_seconds <= cfg.max_seconds, "min_seconds", "must be <= max_seconds "
          f"({cfg.max_seconds})")
    check(cfg.min_motion <= cfg.max_motion, "min_motion", f"must be <= max_motion "
          f"({cfg.max_motion})")
    check(cfg.max_hamming <= 64, "max_hamming", "a 64-bit hash differs in at most 64 bits")
    for key in ("hash_frames", "balance_clusters", "records_per_shard"):
        check(cfg[key] >= 1, key, "must be >= 1")
    check(cfg.store in STORES, "store", f"expected one of {STORES}")
    _validate_buckets(cfg)
    return cfg


def _validate_buckets(cfg) -> None:
    check_list = cfg.buckets
    if not isinstance(check_list, (list, tuple)) or not check_list:
        raise ConfigError(f"config key 'buckets': expected a non-empty list of buckets, got "
                          f"{check_list!r}")
    names = set()
    for i, bucket in enumerate(check_list):
        where = f"buckets[{i}]"
        keys = set(bucket.keys()) if hasattr(bucket, "keys") else set()
        if not BUCKET_KEYS <= keys <= BUCKET_KEYS | OPTIONAL_BUCKET_KEYS:
            raise ConfigError(f"config key {where!r}: expected keys {sorted(BUCKET_KEYS)} (and "
                              f"optionally {sorted(OPTIONAL_BUCKET_KEYS)}), got {bucket!r}")
        name = bucket["name"]
        if name in names:
            raise ConfigError(f"config key '{where}.name': {name!r} used twice")
        names.add(name)
        if bucket["kind"] not in BUCKET_KINDS:
            raise ConfigError(f"config key '{where}.kind' = {bucket['kind']!r}: expected one of "
                              f"{BUCKET_KINDS}")
        for key in ("frames", "height", "width"):
            if not isinstance(bucket[key], int) or bucket[key] < 1:
                raise ConfigError(f"config key '{where}.{key}' = {bucket[key]!r}: must be an "
                                  "integer >= 1")
        if "fps" in keys and not (bucket["kind"] == "video" and isinstance(
                bucket["fps"], (int, float)) and bucket["fps"] > 0):
            raise ConfigError(f"config key '{where}.fps' = {bucket['fps']!r}: a video bucket's "
                              "frame rate, > 0 (image buckets take none)")
        if bucket["kind"] == "image" and bucket["frames"] != 1:
            raise ConfigError(f"config key '{where}.frames' = {bucket['frames']!r}: an image "
                              "bucket holds 1 frame")
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"config key '{where}.name' = {name!r}: must be a plain directory "
                              "name")


def _value(cfg, key):
    return cfg[key] if key in cfg else None
