"""A state dict whose tensors stay on disk until asked for, one key at a time.

A 20B-parameter encoder does not fit in host memory twice (once as the checkpoint, once as our
params), so the streaming converters read keys, shapes and dtypes from file metadata alone (to
check the whole mapping before reading anything) and then read one tensor at a time:

  * .safetensors through `safe_open` (memory-mapped; a tensor is copied out only when read);
  * .bin / .pt / .pth through `torch.load(mmap=True, weights_only=True)` (torch imported only
    then; legacy non-zip files cannot be mapped and are read whole, with a warning);
  * a sharded `*.index.json` (transformers and diffusers share the format), whose shard files are
    opened on first use.

`ArrayStateDict` wraps an in-memory {key: array} dict with the same interface, so one converter
serves both.
"""
import json
import logging
import os

import numpy as np

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class ArrayStateDict:
    """The lazy interface over arrays already in memory."""

    def __init__(self, arrays: dict):
        self._arrays = arrays

    def keys(self) -> list[str]:
        return list(self._arrays)

    def __contains__(self, key) -> bool:
        return key in self._arrays

    def shape(self, key: str) -> tuple:
        return tuple(np.shape(self._arrays[key]))

    def read(self, key: str) -> np.ndarray:
        return np.asarray(self._arrays[key])

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _SafetensorsFile:
    def __init__(self, file: str):
        from safetensors import safe_open
        self.file = file
        self._handle = safe_open(file, framework="numpy")
        self._flax = None

    def keys(self) -> list[str]:
        return list(self._handle.keys())

    def shape(self, key: str) -> tuple:
        return tuple(self._handle.get_slice(key).get_shape())

    def read(self, key: str) -> np.ndarray:
        try:
            return self._handle.get_tensor(key)
        except TypeError:  # safetensors < 0.5 has no numpy bfloat16; its flax reader has
            if self._flax is None:
                from safetensors import safe_open
                self._flax = safe_open(self.file, framework="flax")
            return np.asarray(self._flax.get_tensor(key))

    def close(self) -> None:
        self._handle = self._flax = None


class _TorchFile:
    def __init__(self, file: str):
        import torch  # only legacy .bin checkpoints need torch
        self.file = file
        try:
            self._state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:  # the pre-zip torch format cannot be memory-mapped
            log.warning("%s cannot be memory-mapped (%s); reading it whole", file, err)
            self._state = torch.load(file, map_location="cpu", weights_only=True)

    def keys(self) -> list[str]:
        return list(self._state)

    def shape(self, key: str) -> tuple:
        return tuple(self._state[key].shape)

    def read(self, key: str) -> np.ndarray:
        import torch
        value = self._state[key]
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16 in torch's bridge
            value = value.float()
        return value.numpy()

    def close(self) -> None:
        self._state = None


def _open_file(file: str):
    if file.endswith(".safetensors"):
        return _SafetensorsFile(file)
    if file.endswith((".bin", ".pt", ".pth")):
        return _TorchFile(file)
    raise ValueError(f"{file}: unknown checkpoint format (expected .safetensors, .bin or a "
                     "*.index.json of shards)")


class LazyStateDict:
    """Keys and shapes from metadata; `read(key)` copies one tensor into host memory."""

    def __init__(self, file: str):
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no checkpoint file {file}")
        self.file = file
        self._open: dict[str, object] = {}  # shard file -> open reader
        self._held: dict[str, set] = {}  # shard file -> the keys it really holds
        if file.endswith(".index.json"):
            with open(file) as f:
                index = json.load(f)
            if "weight_map" not in index:
                raise ValueError(f"{file}: sharded index without a 'weight_map'")
            folder = os.path.dirname(file)
            self._shard_of = {k: os.path.join(folder, v) for k, v in index["weight_map"].items()}
        else:
            self._open[file] = _open_file(file)
            self._held[file] = set(self._open[file].keys())
            self._shard_of = dict.fromkeys(self._open[file].keys(), file)

    def _reader(self, key: str):
        if key not in self._shard_of:
            raise KeyError(f"{key} is not in {self.file}")
        shard = self._shard_of[key]
        if shard not in self._open:
            if not os.path.isfile(shard):
                raise FileNotFoundError(f"{self.file} maps {key} to {shard}, which does not "
                                        "exist")
            self._open[shard] = _open_file(shard)
            self._held[shard] = set(self._open[shard].keys())
        if key not in self._held[shard]:
            raise ValueError(f"{self.file} maps {key} to {shard}, which does not hold it")
        return self._open[shard]

    def keys(self) -> list[str]:
        return list(self._shard_of)

    def __contains__(self, key) -> bool:
        return key in self._shard_of

    def shape(self, key: str) -> tuple:
        return self._reader(key).shape(key)

    def read(self, key: str) -> np.ndarray:
        return self._reader(key).read(key)

    def close(self) -> None:
        for reader in self._open.values():
            reader.close()
        self._open.clear()
        self._held.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
