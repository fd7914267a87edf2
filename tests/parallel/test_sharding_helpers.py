"""The sharding helpers: activation constraints need a declared context (or an explicit mesh and
rules) and fail loudly without one; parameters the mesh does not divide are reported by name;
the 30B presets replicate at most 2% of their parameters on their own meshes."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec as P

from mgen_jax.configs.loading import load_config
from mgen_jax.configs.mesh import MESH_AXES, mesh_config
from mgen_jax.configs.text import text_shapes
from mgen_jax.models.attention.context_parallel import context_parallel_attention
from mgen_jax.models.builders import build_dit
from mgen_jax.models.layers import param
from mgen_jax.models.pure_model import PureModel
from mgen_jax.parallel.logical_rules import (DEFAULT_RULES, ShardingContextError,
                                             activation_sharding, active_sharding, constrain,
                                             rules_from_preset, unsharded)
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.replication import replicated_fraction
from mgen_jax.parallel.sharding import param_shardings, undivided_parameters

RULES = DEFAULT_RULES
BATCH = ("act_batch", None)


def _mesh(**axes):
    return build_mesh(mesh_config(**axes))


# --- activation constraints: a declared context or explicit mesh/rules, never a silent no-op ---

def test_constrain_outside_any_context_fails_naming_what_to_do():
    x = jnp.ones((8, 4))
    with pytest.raises(ShardingContextError, match=r"activation_sharding\(mesh, rules\).*"
                                                   r"unsharded\(\)"):
        constrain(x, BATCH)
    with pytest.raises(ShardingContextError):
        jax.jit(lambda a: constrain(a, BATCH))(x)  # at trace time too
    with pytest.raises(ShardingContextError):
        active_sharding()


def test_constrain_inside_unsharded_is_the_identity():
    x = jnp.ones((8, 4))
    with unsharded():
        assert active_sharding() is None
        assert constrain(x, BATCH) is x


def test_constrain_inside_activation_sharding_pins_the_logical_axes():
    mesh = _mesh(data=8)

    @jax.jit
    def f(a):
        return constrain(a * 2, BATCH)

    with activation_sharding(mesh, RULES):
        out = f(jnp.ones((8, 4)))
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("data", None)), 2)


def test_constrain_with_explicit_mesh_and_rules_needs_no_context():
    mesh = _mesh(data=8)
    out = jax.jit(lambda a: constrain(a, BATCH, mesh, RULES))(jnp.ones((8, 4)))
    assert out.sharding.is_equivalent_to(NamedSharding(mesh, P("data", None)), 2)
    with pytest.raises(ValueError, match="both mesh and rules"):
        constrain(jnp.ones((8, 4)), BATCH, mesh=mesh)
    with pytest.raises(ValueError, match="both mesh and rules"):
        with activation_sharding(mesh, None):
            pass


def test_contexts_nest_restore_and_decorate():
    mesh = _mesh(data=8)
    with activation_sharding(mesh, RULES):
        assert active_sharding() == (mesh, RULES)
        with unsharded():
            assert active_sharding() is None
        assert active_sharding() == (mesh, RULES)
    with pytest.raises(ShardingContextError):
        active_sharding()

    @unsharded()  # one line declares a function deliberately unsharded
    def run(a):
        return constrain(a, BATCH)

    x = jnp.ones((8, 4))
    assert run(x) is x and run(x) is x  # re-entered on every call


def test_context_parallel_attention_needs_a_context_or_explicit_mesh():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 2, 4)), jnp.float32)
    with pytest.raises(ShardingContextError):
        context_parallel_attention(x, x, x, strategy="ring")
    with unsharded():
        local = context_parallel_attention(x, x, x, strategy="ring")
    sharded = context_parallel_attention(x, x, x, strategy="ring", mesh=_mesh(data=1, context=8),
                                         rules=RULES)
    np.testing.assert_allclose(sharded, local, atol=1e-5)


def test_the_dit_called_without_a_declared_context_fails_loudly():
    cfg = load_config("experiments/quickstart.py:smoke",
                      ["dit.width=16", "dit.num_heads=2", "dit.mlp_dim=32", "dit.depth=1",
                       "dit.scan_unroll=1"])
    dit = build_dit(cfg)
    latents = jax.ShapeDtypeStruct((2, 2, 2, 2, cfg.tae.z_channels), jnp.float32)
    shapes = text_shapes(cfg.text)
    text = {n: jax.ShapeDtypeStruct((2, length, dim), jnp.float32)
            for n, (length, dim) in shapes.items()}
    mask = {n: jax.ShapeDtypeStruct((2, length), jnp.bool_) for n, (length, _) in shapes.items()}
    t = jax.ShapeDtypeStruct((2,), jnp.float32)

    def forward(params, x, t, text, mask):
        return dit.bind(params)(x, t, text, mask)

    args = (dit.abstract_params(), latents, t, text, mask)
    with pytest.raises(ShardingContextError, match="unsharded"):
        jax.eval_shape(forward, *args)
    with unsharded():
        assert jax.eval_shape(forward, *args).shape == latents.shape
    with activation_sharding(_mesh(data=2, fsdp=4), RULES):
        assert jax.eval_shape(forward, *args).shape == latents.shape


# --- parameters the mesh does not divide are reported ------------------------------------------

class _Odd(nnx.Module):
    def __init__(self, rngs):
        init = nnx.initializers.ones
        self.odd = param(rngs, init, (6, 8), ("embed", "mlp"))     # 6 % fsdp=4: replicated dim
        self.even = param(rngs, init, (8, 8), ("embed", "mlp"))    # divides fsdp=4 and tensor=2
        self.norm = param(rngs, init, (6,), ("norm",))             # replicated by its rule


def test_a_parameter_the_mesh_does_not_divide_is_reported_by_name(caplog):
    model = PureModel.create(_Odd)
    mesh = _mesh(data=1, fsdp=4, tensor=2)
    [u] = undivided_parameters(model.abstract_state, mesh, RULES)
    assert (u.path, u.shape, u.dim, u.logical_axis, u.mesh_axes, u.mesh_size) == (
        "odd", (6, 8), 0, "embed", ("fsdp",), 4)
    with caplog.at_level(logging.WARNING, logger="mgen_jax.parallel.sharding"):
        shardings = param_shardings(model.abstract_state, mesh, RULES)
    [record] = [r for r in caplog.records if r.name == "mgen_jax.parallel.sharding"]
    assert "odd (6, 8)" in record.getMessage() and "'embed'" in record.getMessage()
    assert "even" not in record.getMessage() and "norm" not in record.getMessage()
    assert shardings["odd"].spec == P(None, "tensor")  # still split where it divides
    assert shardings["even"].spec == P("fsdp", "tensor")


def test_nothing_is_reported_when_every_dimension_divides(caplog):
    model = PureModel.create(_Odd)
    for mesh in (_mesh(data=8), _mesh(data=1, fsdp=2, tensor=4)):  # 'embed' over 1 / 2 devices
        assert undivided_parameters(model.abstract_state, mesh, RULES) == []
        with caplog.at_level(logging.WARNING, logger="mgen_jax.parallel.sharding"):
            param_shardings(model.abstract_state, mesh, RULES)
    assert not [r for r in caplog.records if r.name == "mgen_jax.parallel.sharding"]


@pytest.mark.parametrize("stage", ["t2i_256", "t2iv_256", "t2iv_768"])
def test_30b_presets_on_their_own_meshes_divide_every_parameter(stage):
    """The real 30B parameters on each stage's real mesh (abstract: no devices needed)."""
    cfg = load_config(f"experiments/moviegen_30b.py:{stage}")
    dit = build_dit(cfg)
    mesh = AbstractMesh(tuple(cfg.mesh[a] for a in MESH_AXES), MESH_AXES)
    rules = rules_from_preset(cfg.mesh.rules)
    assert undivided_parameters(dit.abstract_state, mesh, rules) == []
    fraction = replicated_fraction(param_shardings(dit.abstract_state, mesh, rules),
                                   dit.abstract_params())
    assert 0 < fraction <= 0.02, fraction
