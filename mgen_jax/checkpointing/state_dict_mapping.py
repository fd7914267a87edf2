"""Filling an NNX model's abstract state from a flat PyTorch-style state dict, one tensor at a
time, and the single loud error every converter raises when checkpoint and model disagree."""
from typing import Callable

import jax.numpy as jnp
import numpy as np
from flax import nnx


def fill_state(state: nnx.State, checkpoint: dict, key_of: Callable[[tuple], str], *,
               display: Callable[[str], str] = lambda key: key) -> tuple[list, list]:
    """Pop each parameter's checkpoint key (`key_of(path)`) out of `checkpoint` into `state`.

    torch's nn.Linear stores [out, in] and our Dense kernel is [in, out], so 2-D kernels are
    transposed; embeddings and tables keep their layout. Returns (missing, mismatched)
    messages; whatever stays in `checkpoint` has no place in the model."""
    missing, mismatched = [], []
    for path, var in nnx.to_flat_state(state):
        target = var.get_value()
        key = key_of(path)
        if key not in checkpoint:
            missing.append(f"{display(key)} (our {'.'.join(map(str, path))}, shape "
                           f"{tuple(target.shape)})")
            continue
        source = np.asarray(checkpoint.pop(key))
        value = source.T if path[-1] == "kernel" and source.ndim == 2 else source
        if value.shape != tuple(target.shape):
            mismatched.append(f"{display(key)}: checkpoint {source.shape} -> {value.shape} in our "
                              f"layout, model expects {tuple(target.shape)}")
            continue
        var.set_value(jnp.asarray(value.astype(target.dtype)))
    return missing, mismatched


def raise_on_mismatch(what: str, *, problems: list, unmapped: list, missing: list,
                      mismatched: list) -> None:
    """One ValueError naming every unmapped, missing and mis-shaped key (plus any
    converter-specific problems listed first); nothing when all is well."""
    problems = list(problems)
    if unmapped:
        problems.append(f"checkpoint keys with no place in the {what}: "
                        + ", ".join(sorted(unmapped)))
    if missing:
        problems.append("model parameters the checkpoint does not fill: " + ", ".join(missing))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise ValueError(f"{what} checkpoint does not match the model:\n  "
                         + "\n  ".join(problems))
