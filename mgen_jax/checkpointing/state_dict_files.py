"""Reading PyTorch-ecosystem weight files into numpy, shared by every converter (diffusers VAE,
transformers text encoders, LPIPS): safetensors with numpy (bf16 through the flax reader), legacy
.bin/.pt with torch imported only then, and sharded *.index.json folders."""
import json
import os

import numpy as np


def load_safetensors(file: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    try:
        return load_file(file)
    except TypeError:  # numpy has no bfloat16; the flax reader returns ml_dtypes arrays instead
        from safetensors.flax import load_file as load_flax
        return {k: np.asarray(v) for k, v in load_flax(file).items()}


def load_torch_bin(file: str) -> dict[str, np.ndarray]:
    import torch  # only legacy .bin checkpoints need torch

    state = torch.load(file, map_location="cpu", weights_only=True)
    return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in state.items()}


def load_state_dict_file(file: str) -> dict[str, np.ndarray]:
    """Flat {key: numpy array} from one .safetensors / .bin / .pt / .pth file or a sharded
    *.index.json (transformers and diffusers write the same index format)."""
    if file.endswith(".index.json"):  # sharded: {"weight_map": {key: shard file}}
        with open(file) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_state_dict_file(os.path.join(os.path.dirname(file), shard)))
        return state
    if file.endswith(".safetensors"):
        return load_safetensors(file)
    if file.endswith((".bin", ".pt", ".pth")):
        return load_torch_bin(file)
    raise ValueError(f"{file}: unknown checkpoint format (expected .safetensors, .bin or a "
                     "*.index.json of shards)")
