"""How much of a model is fully replicated across the mesh (every device holds a whole copy).

With FSDP every large matrix is split, so only norms and small tables stay replicated; Movie Gen's
FSDP presets must keep this fraction at or below 2% of the parameter elements."""
import math

import jax
from jax.sharding import NamedSharding

from mgen_jax.parallel.sharding import param_path


def _is_fully_replicated(sharding) -> bool:
    if isinstance(sharding, NamedSharding):
        # Replicated when no dimension is split over a mesh axis of size > 1.
        for entry in sharding.spec:
            axes = entry if isinstance(entry, (tuple, list)) else (entry,)
            if any(a is not None and sharding.mesh.shape[a] > 1 for a in axes):
                return False
        return True
    return bool(sharding.is_fully_replicated)


def replicated_fraction(param_shardings, abstract_params) -> float:
    """Fraction of parameter elements whose sharding is fully replicated (0.0 .. 1.0).

    param_shardings and abstract_params are pytrees of the same structure (shardings, and arrays
    or ShapeDtypeStructs)."""
    shardings = jax.tree.leaves(param_shardings)
    params = jax.tree.leaves(abstract_params)
    if len(shardings) != len(params):
        raise ValueError(f"{len(shardings)} shardings for {len(params)} parameters")
    total = replicated = 0
    for sharding, p in zip(shardings, params):
        size = math.prod(p.shape)
        total += size
        if _is_fully_replicated(sharding):
            replicated += size
    return replicated / total if total else 0.0


def replicated_parameters(param_shardings, abstract_params, top: int = 5) -> list:
    """The largest fully replicated parameters: [(path "a/b/kernel", elements)], for reports.
    (Those replicated only because the mesh does not divide them: sharding.undivided_parameters.)"""
    out = []
    flat_sh = jax.tree_util.tree_flatten_with_path(param_shardings)[0]
    flat_p = jax.tree.leaves(abstract_params)
    for (path, sharding), p in zip(flat_sh, flat_p):
        if _is_fully_replicated(sharding):
            out.append((param_path(path), math.prod(p.shape)))
    return sorted(out, key=lambda x: -x[1])[:top]
