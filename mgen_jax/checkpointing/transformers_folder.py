"""A transformers-format model folder (what `save_pretrained` writes): config.json next to
model.safetensors, pytorch_model.bin, or their sharded *.index.json. Shared by every transformers
converter (T5 / UL2 / ByT5, CLIP / MetaCLIP)."""
import json
import os

import numpy as np

from mgen_jax.checkpointing.lazy_state_dict import LazyStateDict
from mgen_jax.checkpointing.state_dict_files import load_state_dict_file

# In transformers' order of preference: safetensors over .bin, one file over shards.
WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def load_transformers_config(path: str) -> dict:
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no config.json in {path}")
    with open(file) as f:
        return json.load(f)


def transformers_weights_file(path: str) -> str:
    """The weights file (or shard index) of a transformers folder; a file path is returned as
    is."""
    if os.path.isfile(path):
        return path
    for name in WEIGHTS_NAMES:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    found = sorted(os.listdir(path)) if os.path.isdir(path) else "(not a folder)"
    raise FileNotFoundError(f"no {' / '.join(WEIGHTS_NAMES)} in {path}; found {found}")


def open_transformers_weights(path: str) -> LazyStateDict:
    """The folder's (or file's) tensors, read one at a time on demand."""
    return LazyStateDict(transformers_weights_file(path))


def load_transformers_state_dict(path: str) -> dict[str, np.ndarray]:
    """Every tensor at once as a flat {key: numpy array}: for tests and small models; the
    converters stream through `open_transformers_weights` instead."""
    return load_state_dict_file(transformers_weights_file(path))
