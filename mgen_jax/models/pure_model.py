"""An NNX module seen as pure functions over a params pytree.

`nnx.split` happens once, abstractly; afterwards params are plain nested dicts of arrays
(`nnx.to_pure_dict` layout) that jit, optax and Orbax handle directly, and `bind(params)`
rebuilds the module inside a traced function."""
import dataclasses
from typing import Any, Callable

import jax
from flax import nnx
from jax.sharding import Mesh

from mgen_jax.parallel.sharding import param_shardings


@dataclasses.dataclass(frozen=True)
class PureModel:
    graphdef: Any
    abstract_state: nnx.State
    constructor: Callable[[nnx.Rngs], nnx.Module]

    @classmethod
    def create(cls, constructor: Callable[[nnx.Rngs], nnx.Module]) -> "PureModel":
        """constructor(rngs) -> module; evaluated abstractly (no parameter memory allocated)."""
        abstract = nnx.eval_shape(lambda: constructor(nnx.Rngs(0)))
        graphdef, state = nnx.split(abstract)
        return cls(graphdef, state, constructor)

    def abstract_params(self) -> dict:
        return nnx.to_pure_dict(self.abstract_state)

    def shardings(self, mesh: Mesh, rules: dict) -> dict:
        """Parameter shardings (dimensions the mesh does not divide are replicated and logged)."""
        return param_shardings(self.abstract_state, mesh, rules)

    def init(self, key: jax.Array, shardings: dict | None = None) -> dict:
        """Initialise params directly into their shards (one jit whose outputs are sharded)."""
        def make(k):
            return nnx.to_pure_dict(nnx.state(self.constructor(nnx.Rngs(params=k))))
        return jax.jit(make, out_shardings=shardings)(key)

    def bind(self, params: dict) -> nnx.Module:
        """The module on `params`. Modules that constrain activations (the DiT) must then be
        called inside `activation_sharding(mesh, rules)` or `unsharded()`
        (parallel/logical_rules.py)."""
        state = jax.tree.map(lambda v: v, self.abstract_state)  # fresh Variables
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)

    def num_params(self) -> int:
        return sum(int(x.size) for x in jax.tree.leaves(self.abstract_params()))
