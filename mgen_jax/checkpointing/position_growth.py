"""Growing the factorized position tables between training stages, as Movie Gen does:

    256 px T2I       -> 256 px T2I/V : spatial tables x2 (more aspect ratios), temporal table added
    256 px T2I/V     -> 768 px T2I/V : spatial tables x3

A spatial table grown by a factor f is the old table stretched over f times as many positions
(linear interpolation in position: new row p takes the old embedding at p / f), so a frame f times
larger starts with the same embedding at the same relative location. A temporal table grown from
the images-only stage keeps its rows and adds zero rows: positions are summed, so zeros leave every
existing image embedding unchanged. Every other parameter is carried over unchanged and must have
the same shape in both stages.
"""
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from mgen_jax.checkpointing.manager import PhaseCheckpointer

SPATIAL, TEMPORAL = ("h", "w"), ("t",)


def stretch_table(table: np.ndarray, new_length: int) -> np.ndarray:
    """[L, W] -> [new_length, W]: row p = old table linearly interpolated at p * L / new_length."""
    old = np.asarray(table)
    if new_length == len(old):
        return old
    where = np.arange(new_length) * len(old) / new_length
    lo = np.floor(where).astype(int)
    hi = np.minimum(lo + 1, len(old) - 1)
    frac = (where - lo)[:, None]
    return (1 - frac) * old[lo] + frac * old[hi]


def extend_table(table: np.ndarray, new_length: int) -> np.ndarray:
    """[L, W] -> [new_length, W]: old rows kept, new rows zero."""
    old = np.asarray(table)
    out = np.zeros((new_length, old.shape[1]), old.dtype)
    out[: min(len(old), new_length)] = old[:new_length]
    return out


def grow_positions(params: dict, new_params_shapes: dict) -> dict:
    """Previous stage's DiT params -> params shaped like `new_params_shapes` (pytree of arrays or
    ShapeDtypeStructs of the next stage's model). Raises naming any other parameter whose shape
    differs."""
    def grow(path, old, new):
        name = jax.tree_util.keystr(path)
        table = path[-1].key if path and path[0].key == "positions" else None
        if table in SPATIAL:
            return stretch_table(old, new.shape[0]).astype(old.dtype)
        if table in TEMPORAL:
            return extend_table(old, new.shape[0]).astype(old.dtype)
        if np.shape(old) != tuple(new.shape):
            raise ValueError(f"parameter {name} changes shape between stages "
                             f"({np.shape(old)} -> {tuple(new.shape)}); only position tables may")
        return np.asarray(old)
    return jax.tree_util.tree_map_with_path(grow, jax.device_get(params), new_params_shapes)


def grow_dit_checkpoint(src_checkpoints: str, dst_checkpoints: str, new_model, new_state) -> int:
    """Checkpoint to checkpoint: read the newest DiT train state under `src_checkpoints`, grow its
    position tables to `new_model` (a PureModel of the next stage) and write step 0 of the next
    stage under `dst_checkpoints`: `new_state(params)` builds what is saved, e.g.
    `lambda p: TrainState.create(p, optimizer)` for a fresh optimizer state (the train state is
    the training layer's type; checkpointing only moves pytrees). Returns the source step."""
    src = PhaseCheckpointer(src_checkpoints)
    step = src.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint under {src_checkpoints}")
    old = src.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    params = grow_positions(old["params"], new_model.abstract_params())
    dst = PhaseCheckpointer(dst_checkpoints)
    if dst.latest_step() is not None:
        raise FileExistsError(f"{dst_checkpoints} already holds checkpoints; refusing to overwrite")
    os.makedirs(dst_checkpoints, exist_ok=True)
    dst.save(0, new_state(jax.tree.map(np.asarray, params)),
             meta={"grown_from": os.path.abspath(src_checkpoints), "source_step": int(step)})
    return int(step)
