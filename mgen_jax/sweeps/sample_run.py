"""A sampling-only run's folder: a workdir that `mgen eval` reads like any other, holding the
run's own config.json (the base's with other sampling keys) and a link to the trained base's
checkpoints, so that every run evaluates the same weights without copying them and writes its
eval.json and eval/ media into its own folder."""
import json
import os

import ml_collections

from mgen_jax.sweeps.spec import SweepError, is_sampling_key
from mgen_jax.workdir import checkpoint_dir, claim_workdir, config_path

LINKED = "checkpoints"  # all `mgen eval` reads of the base besides config.json


def prepare_sample_run(base: str, folder: str, config: dict) -> None:
    """Make `folder` an evaluable workdir of `config` (a config.json dict) over `base`'s
    checkpoints; a folder already prepared for another config or base is refused."""
    source = os.path.abspath(os.path.dirname(checkpoint_dir(base, "dit")))
    if not os.path.isdir(source):
        raise SweepError(f"base workdir {base} has no checkpoints: train it first")
    if not os.path.exists(config_path(base)):
        raise SweepError(f"base workdir {base} holds no config.json: not a training workdir")
    check_only_sampling_differs(base, config)
    # claim_workdir refuses a folder made for another config, naming the keys that differ.
    claim_workdir(ml_collections.ConfigDict(config), folder)
    link = os.path.join(folder, LINKED)
    if os.path.islink(link):
        if os.path.realpath(link) != os.path.realpath(source):
            raise SweepError(f"{link} points at {os.readlink(link)}, not at the base's "
                             f"{source}; use a new --out")
        return
    if os.path.exists(link):
        raise SweepError(f"{link} exists and is not a link to the base's checkpoints")
    os.symlink(source, link, target_is_directory=True)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_only_sampling_differs(base: str, config: dict) -> None:
    """A sampling run must evaluate the model its base trained: refuse a config that differs
    from the base's config.json in anything but sampling keys."""
    with open(config_path(base)) as f:
        old, new = _flat(json.load(f)), _flat(config)
    differ = sorted(k for k in set(old) | set(new)
                    if old.get(k) != new.get(k) and not is_sampling_key(k))
    if differ:
        raise SweepError(f"base workdir {base} was trained with another config (differs in "
                         f"{differ}); a sample run may only change sampling keys")
