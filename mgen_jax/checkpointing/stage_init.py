"""Checkpoint surgery between training stages: read another run's phase checkpoint and carry its
parameters into the next stage's model (`<phase>_train.init_from`; the TrainState is built from
them in training/init_from.py).

Where the source is (`find_source`): a previous stage's workdir (its checkpoints/<phase> is
taken), a phase's checkpoint folder (e.g. WORKDIR/checkpoints/dit) or one step of it
(WORKDIR/checkpoints/dit/2000). A folder's newest step is used.

What carries over (`grow_params`): every parameter, checked by name and shape against the new
model's abstract parameters. A parameter missing on either side, or of another shape, fails
naming it, except the changes a stage is allowed to make:

  positions.{t,h,w}   the DiT's position tables grow per axis by a stretch factor
                      (checkpointing/position_growth.py: 1 extends, 3 stretches x3);
  patch_embed.kernel, latent channels grow (the TAE's channels, or channels concatenated for
  final_proj.*        conditioning): the new input rows and output columns are zero, so the
                      model computes what it did on the old channels.

The stretch factors (`dit_growth`): given per axis (`dit_train.init_position_stretch.{t,h,w}`
> 0), or derived (0) from the two configs' resolutions: h and w stretch by the ratio of this
config's data.height (width) to the source's, both in latent patches; t is never stretched
(time only ever gains rows). So 256 px -> 256 px extends (more aspect ratios, the temporal table
added) and 256 px -> 768 px stretches x3. The source's config is its workdir's config.json; a
checkpoint folder outside a workdir has none, and then a table that changes length needs its
factor given."""
import dataclasses
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from mgen_jax.checkpointing.position_growth import AXES, grow_table, stretched_length
from mgen_jax.configs.tae import spatial_compression
from mgen_jax.workdir import CONFIG_FILE, checkpoint_dir, config_path

STATE_ITEM = "state"  # the TrainState's item in a PhaseCheckpointer step (checkpointing/manager.py)
EMA_FIELD = "ema_params"  # optimizer.params_ema's state (training/optimizer.py:ParamsEmaState)


@dataclasses.dataclass(frozen=True)
class StageSource:
    checkpoints: str          # a phase's checkpoint folder
    step: int                 # the step read
    workdir: str | None       # the workdir it belongs to (holding config.json), if any

    @property
    def state_dir(self) -> str:
        return os.path.join(self.checkpoints, str(self.step), STATE_ITEM)


@dataclasses.dataclass(frozen=True)
class Growth:
    """The shape changes a stage may make. stretch: {t, h, w: factor} for the DiT's position
    tables (None: they may not change); patch_volume: pt * ph * pw of both stages' patches, for
    latent-channel growth (None: channels may not change)."""
    stretch: dict | None = None
    patch_volume: int | None = None


NO_GROWTH = Growth()


def checkpoint_steps(directory: str) -> list[int]:
    """The finished steps of a phase's checkpoint folder (Orbax's unfinished saves carry a
    suffix and are not listed)."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(n) for n in os.listdir(directory)
                  if n.isdigit() and os.path.isdir(os.path.join(directory, n, STATE_ITEM)))


def _workdir_holding(folder: str) -> str | None:
    return folder if os.path.isfile(config_path(folder)) else None


def find_source(init_from: str, phase: str, key: str = "init_from") -> StageSource:
    """Resolve `init_from` (a workdir, a phase's checkpoint folder or one step of it); `key`
    names the config key in errors."""
    path = os.path.abspath(os.path.expanduser(init_from))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{key}: {path} does not exist (a previous stage's workdir, or "
                                f"its checkpoints/{phase} folder)")
    name, parent = os.path.basename(path), os.path.dirname(path)
    if _workdir_holding(path):  # a workdir: its own checkpoints of this phase
        folder, workdir = checkpoint_dir(path, phase), path
        steps = checkpoint_steps(folder)
    elif name.isdigit() and os.path.isdir(os.path.join(path, STATE_ITEM)):  # one step
        folder, steps = parent, [int(name)]
        workdir = _workdir_holding(os.path.dirname(os.path.dirname(parent)))
    else:  # a phase's checkpoint folder, <workdir>/checkpoints/<phase> when in a workdir
        folder, steps = path, checkpoint_steps(path)
        workdir = _workdir_holding(os.path.dirname(os.path.dirname(path)))
    if not steps:
        raise FileNotFoundError(
            f"{key}: no finished checkpoint in {folder} (give a workdir holding {CONFIG_FILE} and "
            f"checkpoints/{phase}/, a checkpoint folder, or one step of it)")
    return StageSource(checkpoints=folder, step=steps[-1], workdir=workdir)


def key_names(path) -> tuple[str, ...]:
    """A key path as plain names: dict keys, attribute names and sequence indices alike (Orbax
    stores NamedTuples as dicts and tuples as lists; NNX dicts may hold integer keys)."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def dotted(names: tuple[str, ...]) -> str:
    return ".".join(names)


def flatten(tree) -> dict:
    """{names: leaf} of a pytree."""
    return {key_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def state_metadata(source: StageSource) -> dict:
    """The saved TrainState's tree ({step, params, opt_state}) of array metadata (shape, dtype),
    without reading any array."""
    handler = ocp.PyTreeCheckpointHandler()
    try:  # the item's handler itself: the step folder's metadata is the manager's business
        return handler.metadata(epath.Path(source.state_dir)).tree
    finally:
        handler.close()


def subtree(tree, names: tuple[str, ...]):
    for n in names:
        tree = tree[int(n)] if isinstance(tree, (list, tuple)) else tree[n]
    return tree


def find_field(tree, field: str, prefix: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path of the first dict entry named `field` in a (metadata) tree, or None."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return None
    for k, v in items:
        if str(k) == field:
            return prefix + (str(k),)
        found = find_field(v, field, prefix + (str(k),))
        if found is not None:
            return found
    return None


def restore_subtrees(source: StageSource, metadata: dict, roots: list[tuple[str, ...]],
                     sharding_for) -> list[dict]:
    """Read only the subtrees at `roots` of the saved TrainState (e.g. ('params',)), each as
    {names under its root: array}; sharding_for(names under the root, shape) -> the sharding
    each array is restored into (the new model's, where the shape carries over)."""
    def target(path, meta):
        names = key_names(path)
        for root in roots:
            if names[:len(root)] == root and hasattr(meta, "shape"):
                shape = tuple(meta.shape)
                return jax.ShapeDtypeStruct(shape, meta.dtype,
                                            sharding=sharding_for(names[len(root):], shape))
        return ocp.PLACEHOLDER

    item = jax.tree_util.tree_map_with_path(target, metadata)
    args = jax.tree.map(
        lambda x: ocp.ArrayRestoreArgs(sharding=x.sharding, global_shape=x.shape, dtype=x.dtype)
        if isinstance(x, jax.ShapeDtypeStruct) else x, item)
    handler = ocp.PyTreeCheckpointHandler()
    try:
        restored = handler.restore(epath.Path(source.state_dir),
                                   args=ocp.args.PyTreeRestore(item=item, restore_args=args))
    finally:
        handler.close()
    return [flatten(subtree(restored, root)) for root in roots]


def _grow_channels(x: np.ndarray, axis: int, new_size: int, patch_volume: int) -> np.ndarray:
    """Zero channels appended to a [..., pt*ph*pw*C, ...] axis (C fastest: models/dit/
    embeddings.py patchify)."""
    old_size = x.shape[axis]
    moved = np.moveaxis(np.asarray(x), axis, -1)
    split = moved.reshape(moved.shape[:-1] + (patch_volume, old_size // patch_volume))
    pad = [(0, 0)] * (split.ndim - 1) + [(0, (new_size - old_size) // patch_volume)]
    grown = np.pad(split, pad).reshape(moved.shape[:-1] + (new_size,))
    return np.moveaxis(grown, -1, axis)


# Parameters whose axis counts latent channels: (names, axis).
CHANNEL_AXES = {("patch_embed", "kernel"): 0, ("final_proj", "kernel"): 1,
                ("final_proj", "bias"): 0}


def _leaf_growth(names, old: tuple, new: tuple, growth: Growth, what: str):
    """How one parameter goes from shape `old` to `new`: (fn(array) -> array, change note), or
    None when it keeps its shape; raises naming it when `growth` does not allow the change."""
    name = f"{what} {dotted(names)}"
    if old == new:
        return None
    if (len(names) == 2 and names[0] == "positions" and names[1] in AXES
            and growth.stretch is not None and old[1:] == new[1:]):
        factor = growth.stretch[names[1]]
        if stretched_length(old[0], factor) > new[0]:
            raise ValueError(f"{name}: {old[0]} rows stretched x{factor:g} need "
                             f"{stretched_length(old[0], factor)}, the new table has {new[0]}")
        how = "extended" if factor == 1 else f"stretched x{factor:g}"
        return (lambda x: grow_table(x, new[0], factor),
                f"{dotted(names)} {old[0]}->{new[0]} rows {how}")
    if names in CHANNEL_AXES and growth.patch_volume is not None:
        axis, volume = CHANNEL_AXES[names], growth.patch_volume
        if (old[:axis] + old[axis + 1:] != new[:axis] + new[axis + 1:] or old[axis] % volume
                or new[axis] % volume or new[axis] < old[axis]):
            raise ValueError(f"{name} has shape {old} in the source checkpoint, {new} in this "
                             f"model: not a growth of the latent channels with {volume} latent "
                             "pixels per patch (did dit.patch_size change?)")
        return (lambda x: _grow_channels(x, axis, new[axis], volume),
                f"{dotted(names)} {old[axis] // volume}->{new[axis] // volume} latent channels "
                "(new zero)")
    allowed = (" (only the DiT's position tables and latent channels may grow)"
               if growth != NO_GROWTH else "")
    raise ValueError(f"{name} has shape {old} in the source checkpoint, {new} in this "
                     f"model{allowed}")


def plan_growth(source_shapes: dict, target_abstract, growth: Growth = NO_GROWTH,
                what: str = "parameter") -> dict:
    """Check a source ({names: shape}) against the new model's abstract parameters before any
    array is read: {names: (fn, note)} for the parameters that change. Raises naming every
    parameter missing on either side, or the first whose change `growth` does not allow."""
    flat_target = flatten(target_abstract)
    missing = [dotted(n) for n in flat_target if n not in source_shapes]
    extra = [dotted(n) for n in source_shapes if n not in flat_target]
    if missing or extra:
        raise ValueError(
            f"the source checkpoint and this model hold different {what}s: "
            + "; ".join(f"{label}: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
                        for label, names in (("missing in the source", missing),
                                             ("not in this model", extra)) if names))
    plan = {}
    for names, new in flat_target.items():
        step = _leaf_growth(names, tuple(source_shapes[names]), tuple(new.shape), growth, what)
        if step is not None:
            plan[names] = step
    return plan


def grow_params(source: dict, target_abstract, growth: Growth = NO_GROWTH,
                what: str = "parameter"):
    """{names: array} of the source -> a pytree shaped like `target_abstract` (arrays or
    ShapeDtypeStructs of the new model), and the changes made, one note each (for the log).
    Arrays that keep their shape pass through untouched (no copy to the host); the ones that
    grow (small: tables, patch projections) are reshaped on the host."""
    plan = plan_growth({n: x.shape for n, x in source.items()}, target_abstract, growth, what)
    leaves = []
    for names, new in flatten(target_abstract).items():
        old = source[names]
        if names in plan:
            old = plan[names][0](np.asarray(jax.device_get(old)))
        leaves.append(old if old.dtype == new.dtype else old.astype(new.dtype))
    tree = jax.tree.unflatten(jax.tree.structure(target_abstract), leaves)
    return tree, [note for _, note in plan.values()]


def position_lengths(params) -> dict:
    """{t, h, w: rows} of a DiT's position tables (arrays or metadata)."""
    return {axis: int(params["positions"][axis].shape[0]) for axis in AXES}


def _tokens(cfg, axis: str) -> int:
    """Latent patches along h or w at the config's training resolution."""
    size = cfg.data.height if axis == "h" else cfg.data.width
    return size // (spatial_compression(cfg.tae) * cfg.dit.patch_size["thw".index(axis)])


def dit_growth(cfg, source_cfg, old_lengths: dict, new_lengths: dict,
               key: str = "dit_train.init_position_stretch", source_name: str = "the source") \
        -> Growth:
    """The stretch factor of each position table (see the module doc) and the patch volume.
    cfg: this stage's config; source_cfg: the source's (None when it has no workdir)."""
    requested = cfg.dit_train.init_position_stretch
    if source_cfg is not None and tuple(source_cfg.dit.patch_size) != tuple(cfg.dit.patch_size):
        raise ValueError(f"dit.patch_size {tuple(cfg.dit.patch_size)} differs from "
                         f"{source_name}'s {tuple(source_cfg.dit.patch_size)}: its patch "
                         "embedding cannot carry over")
    stretch = {}
    for axis in AXES:
        factor, why = float(requested[axis]), f"{key}.{axis}"
        if factor == 0 and (axis == "t" or old_lengths[axis] == new_lengths[axis]
                            and source_cfg is None):
            factor = 1.0
        elif factor == 0 and source_cfg is not None:
            new, old = _tokens(cfg, axis), _tokens(source_cfg, axis)
            factor = new / old
            res = "height" if axis == "h" else "width"
            why = (f"{key}.{axis} = 0: data.{res} {source_cfg.data[res]} -> {cfg.data[res]} px, "
                   f"{old} -> {new} latent patches")
        elif factor == 0:
            raise ValueError(
                f"{key}.{axis}: the position table {axis} grows {old_lengths[axis]} -> "
                f"{new_lengths[axis]} rows and {source_name} has no {CONFIG_FILE} to compare "
                f"resolutions with; set {key}.{axis} (1: extend, same resolution; 3: stretch "
                "x3, resolution x3)")
        needed = stretched_length(old_lengths[axis], factor)
        if needed > new_lengths[axis]:
            raise ValueError(f"{why}: the position table {axis} of {old_lengths[axis]} rows "
                             f"stretched x{factor:g} needs {needed} rows; dit.max_positions "
                             f"gives {new_lengths[axis]}")
        stretch[axis] = factor
    return Growth(stretch=stretch, patch_volume=int(np.prod(cfg.dit.patch_size)))
