"""PyTorch LPIPS/VGG16 weights -> our LPIPS params (a pure dict, see PureModel).

Accepted names (numpy arrays or torch tensors):
  * the VGG16 trunk either as torchvision's vgg16 state dict (`features.{i}.weight/bias`;
    `classifier.*` ignored) or as an lpips.LPIPS state dict (`net.slice{k}.{i}.weight/bias`, the
    same torchvision index i; `scaling_layer.shift/scale` checked against our constants);
  * the linear heads as lpips' `lin{k}.model.1.weight` [1, C, 1, 1] (lpips' weights/v0.1/vgg.pth).
A full lpips.LPIPS state dict holds both: pass it as the first argument and None as the second.
Every key must map, every parameter must be set exactly once, shapes must match; otherwise a
ValueError names the key."""
import re
from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgen_jax.models.perceptual.lpips import LPIPS, SCALE, SHIFT, VGG16_CONV_INDICES
from mgen_jax.models.pure_model import PureModel

# lpips' vgg16 slices keep torchvision's indices: slice k holds features[start:stop].
_SLICES = {1: range(0, 4), 2: range(4, 9), 3: range(9, 16), 4: range(16, 23), 5: range(23, 30)}
_FEATURES = re.compile(r"features\.(\d+)\.(weight|bias)")
_SLICE = re.compile(r"net\.slice(\d)\.(\d+)\.(weight|bias)")
_LIN = re.compile(r"lin(\d)\.model\.1\.weight")


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, np.float32)


def _conv_target(key: str, index: int, kind: str):
    if index not in VGG16_CONV_INDICES:
        raise ValueError(f"LPIPS weights: key {key!r} is VGG16 features index {index}, which is "
                         f"not a conv (convs are at {VGG16_CONV_INDICES})")
    return ("convs", VGG16_CONV_INDICES.index(index), "kernel" if kind == "weight" else "bias")


def _target(key: str):
    """Our param path for a torch key, or None for keys to skip (after checking them)."""
    if m := _FEATURES.fullmatch(key):
        return _conv_target(key, int(m.group(1)), m.group(2))
    if m := _SLICE.fullmatch(key):
        k, index = int(m.group(1)), int(m.group(2))
        if k not in _SLICES or index not in _SLICES[k]:
            raise ValueError(f"LPIPS weights: key {key!r}: index {index} is not in lpips' slice{k}")
        return _conv_target(key, index, m.group(3))
    if m := _LIN.fullmatch(key):
        k = int(m.group(1))
        if k > 4:
            raise ValueError(f"LPIPS weights: key {key!r}: lpips has lin0..lin4")
        return ("lins", k, "kernel")
    if key.startswith("classifier."):
        return None  # torchvision's fully connected head; LPIPS uses only the conv trunk
    return "unmapped"


def _check_scaling(key: str, value: np.ndarray) -> None:
    expected = {"scaling_layer.shift": SHIFT, "scaling_layer.scale": SCALE}[key]
    if not np.allclose(value.reshape(-1), expected, atol=1e-6):
        raise ValueError(f"LPIPS weights: key {key!r} is {value.reshape(-1)}, not lpips' "
                         f"{expected}")


def _torch_name(path) -> str:
    """The torchvision/lpips name of one of our params, for 'missing' messages."""
    group, i, leaf = path
    if group == "lins":
        return f"lin{i}.model.1.weight"
    return f"features.{VGG16_CONV_INDICES[i]}.{'weight' if leaf == 'kernel' else 'bias'}"


def convert_lpips(vgg_state_dict: Mapping[str, Any], lin_state_dict: Mapping[str, Any] | None,
                  model: LPIPS | PureModel) -> dict:
    """Torch state dicts -> our LPIPS params (pure dict). `model` gives the expected shapes: an
    LPIPS module (also updated in place) or its PureModel."""
    abstract = (model.abstract_params() if isinstance(model, PureModel)
                else nnx.to_pure_dict(nnx.state(model)))
    filled: dict[tuple, tuple[str, np.ndarray]] = {}
    for source in (vgg_state_dict, lin_state_dict or {}):
        for key, value in source.items():
            if key in ("scaling_layer.shift", "scaling_layer.scale"):
                _check_scaling(key, _numpy(value))
                continue
            path = _target(key)
            if path is None:
                continue
            if path == "unmapped":
                raise ValueError(f"LPIPS weights: unmapped key {key!r} (expected features.*, "
                                 f"net.slice*, lin*.model.1.weight, classifier.*, scaling_layer.*)")
            if path in filled:
                raise ValueError(f"LPIPS weights: key {key!r} sets the same parameter as "
                                 f"{filled[path][0]!r}")
            array = _numpy(value)
            if path[2] == "kernel":  # torch OIHW -> our HWIO (lin weights [1, C, 1, 1] alike)
                if array.ndim != 4:
                    raise ValueError(f"LPIPS weights: key {key!r} has shape {array.shape}, "
                                     f"expected a 4-d [out, in, kh, kw] conv weight")
                array = array.transpose(2, 3, 1, 0)
            expected = abstract[path[0]][path[1]][path[2]].shape
            if array.shape != tuple(expected):
                raise ValueError(f"LPIPS weights: key {key!r} has shape {_numpy(value).shape}, "
                                 f"which does not fit our parameter {path} of shape {expected}")
            filled[path] = (key, array)
    params: dict = {}
    for group, entries in abstract.items():
        params[group] = {}
        for i, leaves in entries.items():
            params[group][i] = {}
            for leaf in leaves:
                if (group, i, leaf) not in filled:
                    raise ValueError(f"LPIPS weights: missing key {_torch_name((group, i, leaf))!r}"
                                     + (" (or its net.slice* name)" if group == "convs" else ""))
                params[group][i][leaf] = jnp.asarray(filled[(group, i, leaf)][1])
    if isinstance(model, nnx.Module):
        state = nnx.state(model)
        nnx.replace_by_pure_dict(state, params)
        nnx.update(model, state)
    return params


def lpips_model() -> PureModel:
    return PureModel.create(lambda rngs: LPIPS(rngs=rngs))


def parse_lpips_checkpoint(spec: str) -> tuple[str, str | None]:
    """cfg.tae.lpips_checkpoint: 'lpips_full.pth' (an lpips.LPIPS state dict) or
    'vgg16.pth,lin.pth' (torchvision vgg16 weights, then lpips' v0.1/vgg.pth)."""
    paths = [p.strip() for p in spec.split(",")]
    if not spec.strip() or len(paths) > 2 or not all(paths):
        raise ValueError(f"tae.lpips_checkpoint {spec!r}: expected 'full.pth' or 'vgg.pth,lin.pth'")
    return paths[0], (paths[1] if len(paths) == 2 else None)


def load_lpips(vgg_path: str, lin_path: str | None = None) -> dict:
    """Read .pth state dicts (torch imported only here, tensors only: weights_only=True) and
    convert them; returns the params for `lpips_model()`."""
    import torch

    def read(path):
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(sd, Mapping):
            raise ValueError(f"{path}: expected a state dict, got {type(sd).__name__}")
        return sd

    return convert_lpips(read(vgg_path), read(lin_path) if lin_path else None, lpips_model())
