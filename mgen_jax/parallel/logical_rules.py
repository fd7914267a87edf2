"""The one table mapping logical axis names to mesh axes, and activation constraints that use it.

Parameters and large activations name their dimensions logically ('embed', 'mlp', 'act_batch',
...). A preset maps each name to mesh axes; experiments pick a preset by name.

Activation constraints need a mesh and rules, and nothing supplies them by default: the caller
of model code declares them, `activation_sharding(mesh, rules)` (sharded) or `unsharded()`
(deliberately not), as a context or a decorator; model code run outside both raises
`ShardingContextError`.
"""
import contextlib
import contextvars
import math

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


def _dims_to_axes(names, rules: dict, mesh: Mesh | None, shape):
    """Per dimension: (logical name, mesh axes it is split over, mesh axes it maps to but is
    not split over because they do not divide it)."""
    out, used = [], set()
    for i, name in enumerate(names):
        if name is not None and name not in rules:
            raise KeyError(f"logical axis {name!r} has no sharding rule")
        axes = rules.get(name) if name is not None else None
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes = tuple(a for a in axes if a not in used and (mesh is None or mesh.shape[a] > 1))
        undivided = ()
        if axes and shape is not None and mesh is not None:
            if shape[i] % math.prod(mesh.shape[a] for a in axes):
                axes, undivided = (), axes
        used.update(axes)
        out.append((name, axes, undivided))
    return out


def logical_to_spec(names, rules: dict, mesh: Mesh | None = None, shape=None) -> PartitionSpec:
    """Map logical names to a PartitionSpec. With a shape, a dimension the mesh axes do not
    divide is replicated instead (tiny test models have odd sizes; `undivided_dims` lists
    them, and parameter shardings report them: parallel/sharding.py)."""
    return PartitionSpec(*(None if not axes else axes[0] if len(axes) == 1 else axes
                           for _, axes, _ in _dims_to_axes(names, rules, mesh, shape)))


def undivided_dims(names, rules: dict, mesh: Mesh, shape) -> list[tuple[int, str, tuple]]:
    """[(dimension, logical name, mesh axes)] of the dimensions `logical_to_spec` replicates
    only because the mesh axes they map to do not divide their size."""
    return [(i, name, undivided)
            for i, (name, _, undivided) in enumerate(_dims_to_axes(names, rules, mesh, shape))
            if undivided]


# Activation sharding: model code that constrains its activations (the DiT) reads the mesh and
# rules from a context that its caller must declare. There is no silent default: outside any
# declaration `constrain` raises, so a sharded run cannot quietly lose its constraints.
class ShardingContextError(RuntimeError):
    """Model code asked for the activation sharding and no caller declared one."""


_NOT_DECLARED = (
    "no activation sharding declared: code that constrains activations (the DiT's blocks, "
    "context-parallel attention) must run inside `activation_sharding(mesh, rules)` (what "
    "jit_train_step and TextToVideo enter) or, deliberately unsharded (one device, tests), "
    "inside `unsharded()`; both are also decorators (mgen_jax/parallel/logical_rules.py). "
    "Helpers that take mesh= and rules= can also be given them explicitly.")
_ACTIVE = contextvars.ContextVar("mgen_activation_sharding", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh | None, rules: dict | None):
    """Declare how the model code traced inside shards its activations (a context manager and
    a decorator). (mesh, rules): `constrain` pins activations to their logical axes on `mesh`;
    (None, None), i.e. `unsharded()`: deliberately no constraints (`constrain` is the identity).
    Enter it inside the jitted function (as jit_train_step does): it acts while tracing."""
    if (mesh is None) != (rules is None):
        raise ValueError("activation_sharding: give both mesh and rules, or neither (unsharded)")
    token = _ACTIVE.set((mesh, rules))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def unsharded():
    """`activation_sharding(None, None)`: run model code with no sharding constraints."""
    return activation_sharding(None, None)


def active_sharding() -> tuple[Mesh, dict] | None:
    """(mesh, rules) of the enclosing `activation_sharding`, None inside `unsharded()`; raises
    ShardingContextError outside both."""
    active = _ACTIVE.get()
    if active is None:
        raise ShardingContextError(_NOT_DECLARED)
    return None if active[0] is None else active


def resolve_sharding(mesh: Mesh | None = None, rules: dict | None = None):
    """(mesh, rules) when both are given, else those of the enclosing context (None when it is
    `unsharded()`; ShardingContextError outside any)."""
    if mesh is not None and rules is not None:
        return mesh, rules
    if mesh is not None or rules is not None:
        raise ValueError("give both mesh and rules, or neither (then the enclosing "
                         "activation_sharding context supplies them)")
    return active_sharding()


def constrain(x: jax.Array, names, mesh: Mesh | None = None, rules: dict | None = None) -> jax.Array:
    """Sharding constraint by logical names, on the given mesh/rules or the enclosing
    `activation_sharding` context's; the identity inside `unsharded()`, an error outside both."""
    active = resolve_sharding(mesh, rules)
    if active is None:
        return x
    mesh, rules = active
    spec = logical_to_spec(names, rules, mesh, x.shape)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))
