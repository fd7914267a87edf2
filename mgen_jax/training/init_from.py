"""A phase's first TrainState: freshly initialised, or carried over from another run's checkpoint
when `<phase>_train.init_from` names one (the stage chaining of Movie Gen's recipe: each stage
starts from the previous stage's weights).

Only a phase without checkpoints of its own starts here; once it has saved, it resumes from
those and init_from is not read again.

What is read (checkpointing/stage_init.py does the surgery): the source's newest step (or the
step named), its EMA parameters when its optimizer kept an EMA (what it sampled with), else its
parameters; the optimizer starts fresh (moments zero, the LR schedule at this phase's step 0).
`<phase>_train.init_optimizer_state=True` carries the optimizer over instead: the source's raw
parameters with their Adam moments and EMA (grown like the parameters), the step counters and
schedule starting over; the two optimizers must keep the same states. The DiT's position tables
and latent channels grow as stage_init's doc says; every other parameter must keep its shape.
"""
import jax

from mgen_jax.checkpointing.stage_init import (EMA_FIELD, NO_GROWTH, StageSource, dit_growth,
                                               dotted, find_field, find_source, flatten,
                                               grow_params, key_names, plan_growth,
                                               position_lengths, restore_subtrees,
                                               state_metadata, subtree)
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.sharded_training import init_train_state
from mgen_jax.training.tae_from_diffusers import autoencoder_params_from_diffusers
from mgen_jax.training.train_state import TrainState
from mgen_jax.workdir import load_workdir_config


def initial_train_state(ctx, phase: str, model, optimizer, train_cfg, shardings) -> TrainState:
    """The state a phase without checkpoints starts from (ctx: phase_runner.JobContext)."""
    if not train_cfg.init_from and phase == "tae" and ctx.cfg.tae.init_from_diffusers:
        return _tae_from_diffusers(ctx, model, optimizer, shardings)
    if not train_cfg.init_from:
        return init_train_state(model, optimizer, ctx.phase_key(phase, 0), shardings)
    state, line = train_state_from(ctx.cfg, phase, model, optimizer, shardings, ctx.mesh)
    print(f"[{phase}] {line}", flush=True)
    return state


def _tae_from_diffusers(ctx, model, optimizer, shardings) -> TrainState:
    """Fresh TAE state (the discriminator's init) with the autoencoder's params replaced by the
    diffusers image VAE's (training/tae_from_diffusers.py), placed on the state's shardings."""
    converted = autoencoder_params_from_diffusers(ctx.cfg)  # checks the architecture first
    fresh = init_train_state(model, optimizer, ctx.phase_key("tae", 0), shardings)
    params = (dict(fresh.params, autoencoder=converted) if ctx.cfg.tae.disc_weight > 0
              else converted)
    state = jax.jit(lambda p: TrainState.create(p, optimizer), out_shardings=shardings)(params)
    print(f"[tae] initialised from the diffusers VAE {ctx.cfg.tae.init_from_diffusers} "
          "(spatial layers; temporal layers as the identity)", flush=True)
    return state


def train_state_from(cfg, phase: str, model, optimizer, shardings,
                     mesh) -> tuple[TrainState, str]:
    """The TrainState `cfg.<phase>_train.init_from` gives this phase's model, placed on
    `shardings` (arrays that keep their shape are read straight into them), and one line saying
    where it came from and what changed."""
    train_cfg = cfg[f"{phase}_train"]
    source = find_source(train_cfg.init_from, phase, key=f"{phase}_train.init_from")
    metadata = state_metadata(source)
    target = model.abstract_params()
    params_def = jax.tree.structure(target)
    carry = bool(train_cfg.init_optimizer_state)
    ema = find_field(metadata.get("opt_state"), EMA_FIELD, ("opt_state",))
    params_root = ema if ema is not None and not carry else ("params",)
    opt_roots = _param_subtrees(jax.eval_shape(optimizer.init, target), params_def) if carry else []
    for root in opt_roots:
        if not _holds(metadata.get("opt_state"), root):
            raise ValueError(
                f"{phase}_train.init_optimizer_state: the source's optimizer state has no "
                f"{dotted(root)} (its optimizer keeps other states than {phase}_optimizer: e.g. "
                "EMA on in one and off in the other); set it to False for a fresh optimizer")

    growth = _growth(cfg, phase, source, metadata, target)
    roots = [params_root] + [("opt_state",) + r for r in opt_roots]
    for root in roots:  # every shape checked before any array is read
        plan_growth({n: m.shape for n, m in flatten(subtree(metadata, root)).items()}, target,
                    growth, what="parameter" if root == params_root else
                    f"optimizer state {dotted(root)}")

    target_shapes = {n: tuple(x.shape) for n, x in flatten(target).items()}
    params_sh, repl = flatten(shardings.params), replicated(mesh)

    def sharding_for(names, shape):  # tables that grow are read whole, then reshaped
        return params_sh[names] if target_shapes.get(names) == shape else repl

    restored = restore_subtrees(source, metadata, roots, sharding_for)
    params, changes = grow_params(restored[0], target, growth)
    state = jax.jit(lambda p: TrainState.create(p, optimizer), out_shardings=shardings)(
        jax.device_put(params, shardings.params))
    if carry:
        grown = {root: jax.device_put(grow_params(flat, target, growth,
                                                  what=f"optimizer state {dotted(root)}")[0],
                                      shardings.params)
                 for root, flat in zip(opt_roots, restored[1:])}
        state = state.replace(opt_state=_replace_subtrees(state.opt_state, params_def, grown))
    what = "EMA parameters" if params_root == ema else "parameters"
    how = "optimizer state carried over" if carry else "fresh optimizer state"
    line = (f"initialised from {source.checkpoints} step {source.step} ({what}, {how})"
            + ("; " + ", ".join(changes) if changes else "; every parameter unchanged"))
    return state, line


def _growth(cfg, phase: str, source: StageSource, metadata: dict, target: dict):
    """The DiT's allowed shape changes (position tables, latent channels); none elsewhere."""
    params = metadata.get("params")
    if phase != "dit" or not isinstance(params, dict) or "positions" not in params:
        return NO_GROWTH  # grow_params then names whatever does not match
    source_cfg = load_workdir_config(source.workdir) if source.workdir else None
    return dit_growth(cfg, source_cfg, position_lengths(params), position_lengths(target),
                      source_name=source.checkpoints)


def _is_params(params_def):
    return lambda node: isinstance(node, dict) and jax.tree.structure(node) == params_def


def _param_subtrees(opt_state, params_def) -> list[tuple[str, ...]]:
    """Paths (names) of the optimizer-state subtrees shaped like the parameters (moments, EMA)."""
    is_params = _is_params(params_def)
    found = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=is_params)[0]
    return [key_names(path) for path, node in found if is_params(node)]


def _replace_subtrees(opt_state, params_def, replacements: dict):
    is_params = _is_params(params_def)
    found, treedef = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=is_params)
    return jax.tree.unflatten(treedef, [replacements.get(key_names(p), node) for p, node in found])


def _holds(tree, names) -> bool:
    try:
        subtree(tree, names)
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    return True
