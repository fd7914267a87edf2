"""Filling an NNX model's abstract state from a flat PyTorch-style state dict, one tensor at a
time, and the single loud error every converter raises when checkpoint and model disagree.

`stream_params` is the converters' path: it checks the whole mapping from file metadata first
(so a bad checkpoint fails before a byte of it is read), then reads, re-lays-out and places one
tensor at a time straight into its sharding, so peak host memory is about one tensor. A small
in-memory {key: array} dict goes through the same path (`as_source`)."""
from typing import Callable, Iterable

import jax
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.lazy_state_dict import ArrayStateDict
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.sharding import param_shardings


def to_our_layout(path: tuple, source: np.ndarray) -> np.ndarray:
    """torch's nn.Linear stores [out, in] and our Dense kernel is [in, out], so 2-D kernels are
    transposed; embeddings and tables keep their layout."""
    return source.T if path[-1] == "kernel" and np.ndim(source) == 2 else source


def _our_shape(path: tuple, shape: tuple) -> tuple:
    return tuple(reversed(shape)) if path[-1] == "kernel" and len(shape) == 2 else tuple(shape)


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


def _place(value: np.ndarray, sharding) -> jax.Array:
    """One host array onto devices: each addressable device gets only its own slice (also correct
    on many hosts, where every process reads the same file); no sharding -> default device."""
    if sharding is None:
        return jax.device_put(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _at(tree: dict, path: tuple):
    for p in path:
        tree = tree[p]
    return tree


def _has(tree: dict, path: tuple) -> bool:
    try:
        _at(tree, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def stream_params(what: str, abstract_state: nnx.State, source, key_of: Callable[[tuple], str],
                  *, shardings: dict | None = None, skip: Iterable[str] = (),
                  problems: Iterable[str] = ()) -> dict:
    """Params (nnx.to_pure_dict layout) of `abstract_state`, filled from `source` (a
    LazyStateDict / ArrayStateDict: keys(), shape(key), read(key)).

    `key_of(path)` names the checkpoint key of each parameter (the name reported if absent);
    `skip` lists checkpoint keys deliberately left out (a decoder, a vision tower, buffers).
    First, from metadata alone, every missing parameter, mis-shaped tensor and unconsumed
    checkpoint key (plus the caller's `problems`) goes into one ValueError naming them all. Only
    then is each tensor read, re-laid-out, cast to the parameter's dtype and placed into
    `shardings` (a pure dict of Shardings matching the params, e.g. PureModel.shardings(mesh,
    rules)); without shardings, onto the default device."""
    plan, consumed, missing, mismatched = [], set(), [], []
    for path, var in nnx.to_flat_state(abstract_state):
        target = var.get_value()
        key = key_of(path)
        name = ".".join(map(str, path))
        if key not in source:
            missing.append(f"{key} (our {name}, shape {tuple(target.shape)})")
            continue
        consumed.add(key)
        shape = tuple(source.shape(key))
        if _our_shape(path, shape) != tuple(target.shape):
            mismatched.append(f"{key}: checkpoint {shape} -> {_our_shape(path, shape)} in our "
                              f"layout, model expects {tuple(target.shape)} (our {name})")
            continue
        plan.append((path, key, target.dtype))
    problems = list(problems)
    if shardings is not None:
        unplaced = [".".join(map(str, path)) for path, _, _ in plan
                    if not _has(shardings, path)]
        if unplaced:
            problems.append("the given shardings have no entry for our parameters "
                            + ", ".join(unplaced))
    skip = set(skip)
    unmapped = [k for k in source.keys() if k not in consumed and k not in skip]
    raise_on_mismatch(what, problems=problems, unmapped=unmapped, missing=missing,
                      mismatched=mismatched)

    params = nnx.to_pure_dict(abstract_state)
    for path, key, dtype in plan:
        value = np.asarray(to_our_layout(path, source.read(key)), dtype=dtype)
        parent = _at(params, path[:-1])
        parent[path[-1]] = _place(value, None if shardings is None else _at(shardings, path))
    return params


def target_shardings(abstract_state: nnx.State, mesh=None, rules=None) -> dict | None:
    """The converters' placement: NamedShardings from each parameter's logical axis names under
    `rules` (a rules dict or a preset name of parallel/logical_rules.py; default 'default') on
    `mesh`; None (default device) without a mesh."""
    if mesh is None:
        return None
    if rules is None or isinstance(rules, str):
        rules = rules_from_preset(rules or "default")
    return param_shardings(abstract_state, mesh, rules)


def as_source(state_dict):
    """A LazyStateDict stays as is; a plain {key: array} dict gets the same interface."""
    return ArrayStateDict(state_dict) if isinstance(state_dict, dict) else state_dict
