"""Shardings for parameter pytrees (from their logical-axis metadata) and for batches.

A parameter dimension whose mesh axes do not divide its size is replicated over them instead
(tiny test models have odd sizes on purpose). That is reported, never silent: `param_shardings`
logs a warning naming every such parameter, and `undivided_parameters` returns the list (for
tests and `mgen plan`)."""
import dataclasses
import logging
import math

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgen_jax.parallel.logical_rules import logical_to_spec, undivided_dims

log = logging.getLogger(__name__)


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


def param_path(path) -> str:
    """A parameter's key path (from tree_flatten_with_path) as "blocks/ffn/gate/kernel"."""
    return "/".join(str(getattr(k, "key", k)) for k in path)


@dataclasses.dataclass(frozen=True)
class UndividedParameter:
    """A parameter dimension replicated only because its mesh axes do not divide its size."""
    path: str             # "blocks/ffn/gate/kernel"
    shape: tuple
    dim: int
    logical_axis: str
    mesh_axes: tuple      # the mesh axes the logical axis maps to
    mesh_size: int        # their product, which does not divide shape[dim]

    def __str__(self) -> str:
        return (f"{self.path} {tuple(self.shape)}: dim {self.dim} ({self.logical_axis!r}, size "
                f"{self.shape[self.dim]}) not divisible by mesh axes {self.mesh_axes} "
                f"(size {self.mesh_size}), replicated over them")


def undivided_parameters(abstract_state: nnx.State, mesh: Mesh, rules: dict) -> list:
    """[UndividedParameter] of every parameter dimension the mesh axes its logical axis maps to
    do not divide (so `param_shardings` replicates that dimension); empty when all divide."""
    flat_axes = jax.tree_util.tree_flatten_with_path(
        logical_axes(abstract_state), is_leaf=lambda x: isinstance(x, tuple))[0]
    shapes = jax.tree.leaves(nnx.to_pure_dict(abstract_state))
    out = []
    for (path, names), p in zip(flat_axes, shapes):
        for dim, name, axes in undivided_dims(names, rules, mesh, p.shape):
            out.append(UndividedParameter(param_path(path), tuple(p.shape), dim, name, axes,
                                          math.prod(mesh.shape[a] for a in axes)))
    return out


def param_shardings(abstract_state: nnx.State, mesh: Mesh, rules: dict) -> dict:
    """NamedSharding for every parameter, as a pure dict matching nnx.to_pure_dict(state).
    Logs one warning listing the dimensions replicated because the mesh does not divide them."""
    shapes = nnx.to_pure_dict(abstract_state)
    axes = logical_axes(abstract_state)
    undivided = undivided_parameters(abstract_state, mesh, rules)
    if undivided:
        log.warning("%d parameter dimension(s) replicated because the mesh %s does not divide "
                    "them:\n  %s", len(undivided), dict(mesh.shape),
                    "\n  ".join(map(str, undivided)))
    return jax.tree.map(
        lambda names, s: NamedSharding(mesh, logical_to_spec(names, rules, mesh, s.shape)),
        axes, shapes, is_leaf=lambda x: isinstance(x, tuple))


def batch_sharding(mesh: Mesh, rules: dict, ndim: int, leading=("act_batch",)) -> NamedSharding:
    """Batch arrays are split over the batch mesh axes on their leading dimension."""
    names = tuple(leading) + (None,) * (ndim - len(leading))
    return NamedSharding(mesh, logical_to_spec(names, rules, mesh))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
