"""Gradient accumulation inside one jitted step: the batch's k micro-batches run one after the
other under lax.scan (activation memory of one micro-batch), their gradients are summed, and
the step makes one optimizer update: the update of the whole batch.

Micro-batch j is rows j, j+k, j+2k, ... (strided): on a batch-sharded mesh every device holds an
equal part of each micro-batch, so no device idles and nothing moves (a contiguous split would
put a micro-batch on a few devices). The loss function returns the micro-batch's share of the
whole batch's loss (`MicroBatch.share`), so the shares sum to the batch's loss and their
gradients to its gradient. Randomness is drawn for the whole batch and sliced the same way (the
DiT steps), so the accumulated step computes what the whole-batch step does."""
from typing import Callable

import jax
import jax.numpy as jnp

from mgen_jax.parallel.logical_rules import ShardingContextError, active_sharding, constrain
from mgen_jax.parallel.sharding import logical_axes


class MicroBatch:
    """Micro-batch `index` (traced inside the scan) of `count`; count 1 is the whole batch, on
    which every method is the identity (the step without accumulation is unchanged)."""

    def __init__(self, index, count: int):
        self.index, self.count = index, count

    def _split(self, x: jax.Array) -> jax.Array:
        """[B, ...] -> [B / k, k, ...]: row i * k + j at [i, j]."""
        return x.reshape((x.shape[0] // self.count, self.count) + x.shape[1:])

    def take(self, x: jax.Array) -> jax.Array:
        """This micro-batch's rows of a batch array [B, ...] -> [B / k, ...]."""
        if self.count == 1:
            return x
        return jax.lax.dynamic_index_in_dim(self._split(x), self.index, axis=1, keepdims=False)

    def put(self, full: jax.Array, part: jax.Array) -> jax.Array:
        """`full` [B, ...] with this micro-batch's rows replaced by `part` [B / k, ...]."""
        if self.count == 1:
            return part
        split = jax.lax.dynamic_update_index_in_dim(self._split(full), part.astype(full.dtype),
                                                    self.index, axis=1)
        return split.reshape(full.shape)

    def share(self, loss: jax.Array, row_terms: jax.Array, denominator) -> jax.Array:
        """This micro-batch's part of a batch loss `loss` = sum(row_terms) / denominator
        (row_terms [B]: each row's summed contribution): sum over its rows / denominator. The
        whole batch returns `loss` itself."""
        if self.count == 1:
            return loss
        return jnp.sum(self.take(row_terms)) / denominator


def params_layout(model) -> Callable:
    """pin(tree): a params-shaped tree constrained to the model's parameter layout on the
    enclosing activation_sharding mesh (the identity when unsharded or outside any), so the
    accumulated gradient is sharded like the parameters, not left to the partitioner."""
    try:
        active = active_sharding()
    except ShardingContextError:
        active = None
    if active is None:
        return lambda tree: tree
    axes = logical_axes(model.abstract_state)
    return lambda tree: jax.tree.map(lambda names, x: constrain(x, names), axes, tree,
                                     is_leaf=lambda x: isinstance(x, tuple))


def accumulated_value_and_grad(loss_share: Callable, params, count: int, model=None):
    """((loss, aux), grads) of the whole batch from loss_share(params, micro) -> (share, aux) over
    `count` micro-batches: loss and gradients summed in float32, aux (a dict of scalars)
    averaged. model: the PureModel of `params`, whose layout the summed gradient keeps."""
    grad_fn = jax.value_and_grad(loss_share, has_aux=True)
    if count == 1:
        return grad_fn(params, MicroBatch(0, 1))
    pin = (lambda tree: tree) if model is None else params_layout(model)

    def body(carry, j):
        loss, grads = carry
        (share, aux), g = grad_fn(params, MicroBatch(j, count))
        grads = pin(jax.tree.map(lambda a, b: a + b.astype(jnp.float32), grads, g))
        return (loss + share.astype(jnp.float32), grads), aux

    zeros = pin(jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params))
    (loss, grads), aux = jax.lax.scan(body, (jnp.zeros((), jnp.float32), zeros),
                                      jnp.arange(count))
    grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
    return (loss, jax.tree.map(lambda a: jnp.mean(a, axis=0), aux)), grads
