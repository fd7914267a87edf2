"""The one table mapping logical axis names to mesh axes, and activation constraints that use it.

Parameters and large activations name their dimensions logically ('embed', 'mlp', 'act_batch',
...). A preset maps each name to mesh axes; experiments pick a preset by name.
"""
import contextlib
import contextvars

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mgen_jax.configs.registries import MESH_RULES

_PARAMETERS = {
    # FSDP shards every matrix's model dimension; tensor parallelism is Megatron's: q/k/v and the
    # FFN's gate/up are column-parallel ('heads', 'mlp' over tensor), the output projections
    # row-parallel (their input dimension is 'heads'/'mlp').
    "embed": "fsdp", "mlp": "tensor", "heads": "tensor", "kv": None, "q_heads": "tensor",
    "vocab": "tensor", "layers": None, "norm": None, "table": None,
    "conv_in": None, "conv_out": "fsdp", "kernel": None,
}
_ACTIVATIONS = {
    "act_batch": ("data", "fsdp"), "act_embed": None,
    # Inside attention / the FFN the sequence is split over 'context' only (heads and hidden
    # units take 'tensor'); the residual stream between blocks, which remat saves once per layer,
    # is also split over 'tensor' (Megatron sequence parallelism).
    "act_seq": "context", "act_res_seq": ("context", "tensor"),
    "act_mlp": "tensor", "act_heads": "tensor", "act_kv": None, "act_text": None,
    "act_frames": None, "act_height": None, "act_width": None, "act_channels": None,
}

# The presets of configs/registries.py:MESH_RULES.
# data / FSDP / tensor (+ sequence parallel) / context through one table; mesh axes of size 1
# cost nothing, so the mesh shape alone picks the strategy.
DEFAULT_RULES = {**_PARAMETERS, **_ACTIVATIONS}
# The same without sequence parallelism: the residual stream is replicated over 'tensor'.
NO_SEQUENCE_PARALLEL_RULES = {**_PARAMETERS, **_ACTIVATIONS, "act_res_seq": "context"}


def rules_from_preset(name: str) -> dict:
    """The rules table of a MESH_RULES preset (unknown names fail, listing the known ones)."""
    return MESH_RULES.load(name)


def logical_to_spec(names, rules: dict, mesh: Mesh | None = None, shape=None) -> PartitionSpec:
    """Map logical names to a PartitionSpec. With a shape, a dimension the mesh axes do not
    divide is replicated instead (tiny test models have odd sizes)."""
    out, used = [], set()
    for i, name in enumerate(names):
        axes = rules.get(name) if name is not None else None
        if name is not None and name not in rules:
            raise KeyError(f"logical axis {name!r} has no sharding rule")
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape[a] > 1))
        if axes and shape is not None and mesh is not None:
            size = 1
            for a in axes:
                size *= mesh.shape[a]
            if shape[i] % size:
                axes = ()
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


_ACTIVE = contextvars.ContextVar("mgen_activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: dict):
    """Inside this context (while tracing), `constrain` pins activations to their logical axes."""
    token = _ACTIVE.set((mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_sharding():
    """(mesh, rules) of the enclosing `activation_sharding` context, or None outside one."""
    return _ACTIVE.get()


def constrain(x: jax.Array, names) -> jax.Array:
    """Sharding constraint by logical names; a no-op outside `activation_sharding`."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    spec = logical_to_spec(names, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
