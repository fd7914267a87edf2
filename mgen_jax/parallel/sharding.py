"""Shardings for parameter pytrees (from their logical-axis metadata) and for batches."""
import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgen_jax.parallel.logical_rules import logical_to_spec


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def logical_axes(abstract_state: nnx.State) -> dict:
    """Pure dict (same structure as the params) of each parameter's logical axis names."""
    def names(v):
        axes = v.get_metadata().get("logical_axes")
        if axes is None or len(axes) != v.get_value().ndim:
            raise ValueError(f"parameter of shape {v.get_value().shape} has logical_axes {axes!r}")
        return tuple(axes)
    return nnx.to_pure_dict(jax.tree.map(lambda v: v.replace(names(v)), abstract_state,
                                         is_leaf=_is_variable))


def param_shardings(abstract_state: nnx.State, mesh: Mesh, rules: dict) -> dict:
    """NamedSharding for every parameter, as a pure dict matching nnx.to_pure_dict(state)."""
    shapes = nnx.to_pure_dict(abstract_state)
    axes = logical_axes(abstract_state)
    return jax.tree.map(
        lambda names, s: NamedSharding(mesh, logical_to_spec(names, rules, mesh, s.shape)),
        axes, shapes, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh, rules: dict, ndim: int, leading=("act_batch",)) -> NamedSharding:
    """Batch arrays are split over the batch mesh axes on their leading dimension."""
    names = tuple(leading) + (None,) * (ndim - len(leading))
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
