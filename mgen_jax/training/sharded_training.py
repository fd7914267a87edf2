"""Placing a TrainState on a mesh and jitting a pure step with explicit shardings and donation."""
from typing import Callable

import jax
import numpy as np
import optax
from jax.sharding import Mesh

from mgen_jax.models.pure_model import PureModel
from mgen_jax.parallel.logical_rules import activation_sharding
from mgen_jax.parallel.sharding import batch_sharding, replicated
from mgen_jax.training.train_state import TrainState


def train_state_shardings(model: PureModel, optimizer: optax.GradientTransformation,
                          mesh: Mesh, rules: dict) -> TrainState:
    """Optimizer moments follow their parameter's sharding; scalars are replicated. Parameter
    dimensions the mesh does not divide are replicated and logged once, here (param_shardings;
    the list: parallel/sharding.py:undivided_parameters)."""
    params_sh = model.shardings(mesh, rules)
    abstract = jax.eval_shape(lambda p: TrainState.create(p, optimizer), model.abstract_params())
    opt_sh = optax.tree_map_params(optimizer, lambda _, s: s, abstract.opt_state, params_sh,
                                   transform_non_params=lambda _: replicated(mesh))
    return TrainState(step=replicated(mesh), params=params_sh, opt_state=opt_sh)


def abstract_train_state(model: PureModel, optimizer, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs carrying target shardings: what a checkpoint restores into."""
    abstract = jax.eval_shape(lambda p: TrainState.create(p, optimizer), model.abstract_params())
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract, shardings)


def init_train_state(model: PureModel, optimizer, key, shardings: TrainState) -> TrainState:
    def make(k):
        return TrainState.create(model.init(k), optimizer)
    return jax.jit(make, out_shardings=shardings)(key)


def batch_shardings(mesh: Mesh, rules: dict, example_batch: dict) -> dict:
    return {k: batch_sharding(mesh, rules, np.ndim(v)) for k, v in example_batch.items()}


def to_device_batch(batch: dict, shardings: dict) -> dict:
    """Host numpy batch (this process's rows) -> global sharded arrays; drops non-array fields."""
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(batch[k]))
            for k in shardings}


def jit_train_step(step_fn: Callable, mesh: Mesh, rules: dict, state_shardings: TrainState,
                   batch_sh: dict, extra_shardings: tuple = ()) -> Callable:
    """step_fn(state, *extra, batch, key) -> (state, metrics), jitted with explicit shardings,
    the state donated, and traced inside `activation_sharding(mesh, rules)`: the model's
    activations are constrained by the logical rules."""
    repl = replicated(mesh)

    def traced_step(*args):
        with activation_sharding(mesh, rules):
            return step_fn(*args)

    return jax.jit(traced_step,
                   in_shardings=(state_shardings, *extra_shardings, batch_sh, repl),
                   out_shardings=(state_shardings, repl),
                   donate_argnums=(0,))
