"""The optimizer of one phase, from its sub-config (configs/optimizer.py) and number of steps:
global-norm clipping, AdamW on a learning-rate schedule (LR_SCHEDULES; "plateau" adds optax's
reduce_on_plateau, fed the step's loss or the held-out validation loss), an optional EMA of the parameters, all inside the
non-finite guard (training/guards.py). Everything it keeps lives in the optimizer state, so it
is sharded like the parameters (EMA, moments) and checkpointed with the TrainState."""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mgen_jax.configs.optimizer import LR_SCHEDULES
from mgen_jax.training.guards import skip_nonfinite


def warmup_cosine(optimizer_cfg, total_steps: int) -> optax.Schedule:
    o = optimizer_cfg
    warmup = max(o.warmup_steps, 1)
    # decay_steps counts the warm-up; at least one step of decay, also for a 0-step phase (a
    # stage that takes its model over unchanged still builds its optimizer).
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.lr, warmup_steps=warmup,
        decay_steps=max(total_steps, warmup + 1), end_value=o.lr * o.end_lr_fraction)


def warmup_constant(optimizer_cfg, total_steps: int) -> optax.Schedule:
    del total_steps
    return optax.warmup_constant_schedule(init_value=0.0, peak_value=optimizer_cfg.lr,
                                          warmup_steps=max(optimizer_cfg.warmup_steps, 1))


def learning_rate_schedule(optimizer_cfg, total_steps: int) -> optax.Schedule:
    """The schedule by update count (before any plateau reduction)."""
    return LR_SCHEDULES.load(optimizer_cfg.schedule)(optimizer_cfg, total_steps)


def on_plateau(optimizer_cfg) -> bool:
    return bool(LR_SCHEDULES.entry(optimizer_cfg.schedule).meta.get("on_plateau"))


def scale_by_plateau_state() -> optax.GradientTransformation:
    """reduce_on_plateau's state and scale, with the state left alone by the updates: it moves
    only when the validation loss is recorded (`validation_plateau_update`), so the lr steps
    down on the held-out loss (plateau_on=validation_loss), not on the noisy per-step loss."""
    inner = optax.contrib.reduce_on_plateau()

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u: u * state.scale.astype(u.dtype), updates), state

    return optax.GradientTransformation(inner.init, update)


def validation_plateau_update(optimizer_cfg, validate_every: int):
    """record(opt_state, validation loss) -> opt_state with its plateau state advanced by one
    validation; plateau_patience steps are plateau_patience / validate_every validations."""
    o = optimizer_cfg
    plateau = optax.contrib.reduce_on_plateau(
        factor=o.plateau_factor, patience=max(o.plateau_patience // validate_every, 1),
        accumulation_size=1, min_scale=o.plateau_min_scale)
    is_state = lambda x: isinstance(x, optax.contrib.ReduceLROnPlateauState)  # noqa: E731

    @jax.jit
    def record(opt_state, value):
        return jax.tree.map(lambda s: plateau.update({}, s, value=value)[1] if is_state(s) else s,
                            opt_state, is_leaf=is_state)
    return record


class ParamsEmaState(NamedTuple):
    ema_params: Any


def params_ema(decay: float) -> optax.GradientTransformation:
    """Last in a chain: keeps ema <- decay * ema + (1 - decay) * (params + updates), the EMA of
    the parameters after each update, starting from the initial parameters. Updates pass
    unchanged."""
    def init(params):
        # A copy, not the params' own buffers: a donated TrainState must not hold one twice.
        return ParamsEmaState(jax.tree.map(jnp.copy, params))

    def update(updates, state, params):
        new_params = optax.apply_updates(params, updates)
        return updates, ParamsEmaState(
            optax.incremental_update(new_params, state.ema_params, 1.0 - decay))

    return optax.GradientTransformation(init, update)


def find_states(opt_state, cls) -> list:
    """The sub-states of type `cls` inside an optimizer state (chains nest them)."""
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, cls))
    return [n for n in nodes if isinstance(n, cls)]


class TrainOptimizer(optax.GradientTransformationExtraArgs):
    """make_optimizer's result: an optax transformation (init/update: optax combinators and
    tree_map_params take it as one) that also carries what the train step needs from the
    sub-config, since the phases hand the steps only `optimizer`: the micro-batches per step,
    the consecutive-skip limit and the schedule (for the `lr` metric). Attributes of a subclass
    instance: a NamedTuple cannot gain fields."""

    def __new__(cls, tx: optax.GradientTransformationExtraArgs, *, accumulation_steps: int,
                max_consecutive_skips: int, schedule: optax.Schedule):
        self = super().__new__(cls, tx.init, tx.update)
        self.accumulation_steps = accumulation_steps
        self.max_consecutive_skips = max_consecutive_skips
        self.schedule = schedule
        return self

    def learning_rate(self, opt_state) -> jax.Array:
        """The learning rate of the next update from `opt_state`: the schedule at the count of
        updates applied so far (skipped ones do not count), times the plateau scale."""
        (counter,) = find_states(opt_state, optax.ScaleByScheduleState)
        lr = self.schedule(counter.count)
        for plateau in find_states(opt_state, optax.contrib.ReduceLROnPlateauState):
            lr = lr * plateau.scale
        return lr


def make_optimizer(optimizer_cfg, total_steps: int) -> TrainOptimizer:
    o = optimizer_cfg
    schedule = learning_rate_schedule(o, total_steps)
    parts = [optax.clip_by_global_norm(o.grad_clip),
             optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay)]
    if on_plateau(o) and o.plateau_on == "validation_loss":
        parts.append(scale_by_plateau_state())
    elif on_plateau(o):
        window = o.plateau_window
        parts.append(optax.contrib.reduce_on_plateau(
            factor=o.plateau_factor, patience=o.plateau_patience // window,
            accumulation_size=window, min_scale=o.plateau_min_scale))
    if o.ema_decay > 0:
        parts.append(params_ema(o.ema_decay))
    # Without plateau, EMA and skip counter the state is clip + AdamW's, as before they existed.
    tx = skip_nonfinite(optax.chain(*parts), count=o.max_consecutive_skips > 0)
    return TrainOptimizer(tx, accumulation_steps=o.accumulation_steps,
                          max_consecutive_skips=o.max_consecutive_skips, schedule=schedule)


def accumulation_steps(optimizer) -> int:
    """Micro-batches per step: the sub-config's for make_optimizer's optimizers, else 1."""
    return optimizer.accumulation_steps if isinstance(optimizer, TrainOptimizer) else 1
