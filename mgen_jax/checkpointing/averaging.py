"""Model averaging: the weighted mean of one parameter tree across several checkpoints, as Movie
Gen averages the parameters of several fine-tuning runs (moviegen_spec.md §4.1).

How it streams. The checkpoints are never loaded whole, and never N at a time: the target's
leaves are cut into chunks of at most `chunk_bytes` (float32 bytes of the global arrays; a
larger leaf is a chunk of its own), and for each chunk every checkpoint in turn restores just
those leaves (Orbax partial restore: every other leaf of the saved item is a placeholder) as
float32 straight into the target shardings, and is added, times its weight, into a float32
running sum. When the chunk is summed it is cast to the target's dtype and the next chunk
starts. Peak memory is the averaged tree plus two chunks (the running sum and the checkpoint
being added), whatever the number of checkpoints; each process reads only its own shards.
Restoring N times per chunk costs Orbax's per-restore overhead (tens of ms), small next to
reading the arrays.

Before any array is read, the saved metadata of every checkpoint is checked against the target
and the first checkpoint: a missing or extra parameter, a different shape, or a parameter that
is not floating point is refused with its key path and both shapes. Checkpoints are
PhaseCheckpointer directories; the averaged tree may sit anywhere inside the saved item (the
parameters, or an EMA of them inside the optimizer state): `AveragedSource.subtree` names its
place as a key path (`key_names`), so this module needs no training types.
"""
import dataclasses
import math
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

# Float32 bytes summed per chunk (a quarter of the weights of a 1B-parameter model).
DEFAULT_CHUNK_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class AveragedSource:
    """One checkpoint to average: a PhaseCheckpointer directory, the step, and where the
    averaged tree sits inside the saved `item` (key names from the item's root)."""
    directory: str
    step: int
    subtree: tuple[str, ...] = ("params",)
    item: str = "state"

    @property
    def label(self) -> str:
        return f"{self.directory}@{self.step}"


def key_names(path) -> tuple[str, ...]:
    """A jax key path as the names Orbax saves it under: dict keys, attribute names and
    sequence indices, all as strings (a NamedTuple field and a saved dict key then agree)."""
    names = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                names.append(str(getattr(entry, attr)))
                break
        else:
            raise TypeError(f"unsupported key path entry {entry!r}")
    return tuple(names)


def normalized_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights that sum to 1: uniform when None, else the given ones divided by their sum."""
    if weights is None:
        return [1.0 / count] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights given for {count} checkpoints: give one each")
    if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights {weights} must be finite, non-negative and not all zero")
    return [w / sum(weights) for w in weights]


def item_path(directory: str, step: int, item: str = "state") -> str:
    """Where PhaseCheckpointer saves one item of a step (Orbax's default step names)."""
    path = os.path.join(os.path.abspath(directory), str(step), item)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{directory} holds no checkpoint step {step} with a {item!r} "
                                f"item ({path} is missing)")
    return path


def saved_tree(directory: str, step: int, item: str = "state"):
    """The saved item's structure as Orbax stores it (nested dicts and lists of string keys),
    its leaves array metadata (shape, dtype); nothing is read but the metadata."""
    return ocp.PyTreeCheckpointHandler().metadata(epath.Path(item_path(directory, step, item))).tree


def restore_leaves(directory: str, step: int, wanted: dict[tuple[str, ...], jax.ShapeDtypeStruct],
                   item: str = "state", tree=None) -> dict[tuple[str, ...], jax.Array]:
    """Restore only the `wanted` leaves of a saved item (key names -> ShapeDtypeStruct with its
    target dtype and sharding), every other one skipped; returns {key names: array}.
    tree: the item's saved_tree when already read (reading it costs a metadata pass)."""
    tree = saved_tree(directory, step, item) if tree is None else tree
    missing = set(wanted) - {key_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]}
    if missing:
        raise ValueError(f"{directory}@{step} ({item}) has no leaf {_keystr(sorted(missing)[0])}")
    partial = jax.tree_util.tree_map_with_path(
        lambda path, _: wanted.get(key_names(path), ocp.PLACEHOLDER), tree)
    restore_args = jax.tree.map(
        lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape, dtype=a.dtype)
        if isinstance(a, jax.ShapeDtypeStruct) else a, partial)
    restored = ocp.PyTreeCheckpointer().restore(
        item_path(directory, step, item),
        args=ocp.args.PyTreeRestore(partial, restore_args=restore_args))
    flat, _ = jax.tree_util.tree_flatten_with_path(restored)
    return {key_names(p): v for p, v in flat if key_names(p) in wanted}


def average_checkpoints(sources: Sequence[AveragedSource], target, weights=None, *,
                        chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """The weighted mean over `sources` of the tree shaped like `target` (a pytree of
    ShapeDtypeStructs carrying the target shardings), in the target's structure, dtypes and
    shardings. weights: one per source, normalised (default uniform)."""
    if not sources:
        raise ValueError("no checkpoints to average")
    weights = normalized_weights(weights, len(sources))
    flat, treedef = jax.tree_util.tree_flatten_with_path(target)
    names = [key_names(p) for p, _ in flat]
    trees = [saved_tree(s.directory, s.step, s.item) for s in sources]
    _check_compatible(sources, trees, dict(zip(names, (a for _, a in flat))))
    averaged = {}
    for chunk in _chunks(names, [a for _, a in flat], chunk_bytes):
        total = None
        for source, tree, weight in zip(sources, trees, weights):
            wanted = {source.subtree + n: jax.ShapeDtypeStruct(a.shape, jnp.float32,
                                                               sharding=a.sharding)
                      for n, a in chunk}
            restored = restore_leaves(source.directory, source.step, wanted, source.item, tree)
            part = [restored[source.subtree + n] for n, _ in chunk]
            total = _scaled(part, weight) if total is None else _add_scaled(total, part, weight)
        dtypes = tuple(a.dtype for _, a in chunk)
        shardings = [a.sharding for _, a in chunk]
        cast = jax.jit(_cast, static_argnums=1, out_shardings=shardings)
        averaged.update(zip((n for n, _ in chunk), cast(total, dtypes)))
        del total
    return jax.tree_util.tree_unflatten(treedef, [averaged[n] for n in names])


def _cast(total, dtypes):
    return [t.astype(d) for t, d in zip(total, dtypes)]


def _check_compatible(sources, trees, target: dict) -> None:
    """Every source's averaged subtree has exactly the target's parameters, floating point, of
    the target's shapes; errors name the parameter and both shapes."""
    first = None
    for source, tree in zip(sources, trees):
        saved = {key_names(p): m for p, m in jax.tree_util.tree_flatten_with_path(tree)[0]}
        prefix = source.subtree
        found = {n[len(prefix):]: m for n, m in saved.items() if n[:len(prefix)] == prefix}
        if not found:
            raise ValueError(f"checkpoint {source.label} has no {_keystr(prefix)} to average "
                             f"(its {source.item!r} item holds {sorted({n[0] for n in saved})})")
        for name, abstract in target.items():
            if name not in found:
                raise ValueError(f"parameter {_keystr(name)} is missing from checkpoint "
                                 f"{source.label} (structures differ)")
            if not jnp.issubdtype(abstract.dtype, jnp.floating):
                raise ValueError(f"parameter {_keystr(name)} is {abstract.dtype}: only floating "
                                 "point parameters can be averaged")
            shape = tuple(found[name].shape)
            if first is not None and shape != first[1][name]:
                raise ValueError(
                    f"parameter {_keystr(name)} has shape {shape} in checkpoint {source.label} "
                    f"but {first[1][name]} in {first[0]}: checkpoints of different shapes "
                    "cannot be averaged")
            if shape != tuple(abstract.shape):
                raise ValueError(
                    f"parameter {_keystr(name)} has shape {shape} in checkpoint {source.label} "
                    f"but the target model's is {tuple(abstract.shape)}")
        extra = sorted(set(found) - set(target))
        if extra:
            raise ValueError(f"checkpoint {source.label} has parameter {_keystr(extra[0])} the "
                             "target model does not (structures differ)")
        if first is None:
            first = (source.label, {n: tuple(found[n].shape) for n in target})


def _chunks(names, abstracts, chunk_bytes: int):
    """Consecutive (name, abstract) groups of at most chunk_bytes float32 bytes (a larger leaf
    alone)."""
    chunk, size = [], 0
    for name, abstract in zip(names, abstracts):
        nbytes = 4 * int(np.prod(abstract.shape, dtype=np.int64))
        if chunk and size + nbytes > chunk_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append((name, abstract))
        size += nbytes
    if chunk:
        yield chunk


@jax.jit
def _scaled(part, weight):
    return [weight * x for x in part]


# The running sum is donated: it is updated in place, not copied, once per checkpoint.
_add_scaled: Callable = jax.jit(lambda total, part, weight: [t + weight * x
                                                             for t, x in zip(total, part)],
                                donate_argnums=0)


def _keystr(names: tuple[str, ...]) -> str:
    return "".join(f"[{n!r}]" for n in names)
