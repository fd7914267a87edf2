"""Gradient accumulation (training/accumulation.py): a step of 4 micro-batches of 8 makes the
update of one batch of 32, with the step's randomness (text dropout, posterior sample, flow t and
noise) in play, unsharded and on a batch-sharded mesh."""
import functools

import jax
import numpy as np
import optax
import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit
from mgen_jax.models.text.text_inputs import cached_text_example, placeholder_nulls
from mgen_jax.parallel.logical_rules import rules_from_preset, unsharded
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.accumulation import MicroBatch
from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
from mgen_jax.training.optimizer import TrainOptimizer
from mgen_jax.training.sharded_training import (batch_shardings, jit_train_step,
                                                to_device_batch, train_state_shardings)
from mgen_jax.training.train_state import TrainState

OVERRIDES = ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=1",
             "dit.scan_unroll=1", "flow.latent_sample=posterior", "flow.text_dropout=0.5",
             "mesh.data=2", "mesh.fsdp=4"]
BATCH = 32
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def test_micro_batches_are_strided_rows_and_put_inverts_take():
    x = np.arange(12 * 2).reshape(12, 2)
    parts = [np.asarray(MicroBatch(j, 3).take(x)) for j in range(3)]
    assert [p[:, 0].tolist() for p in parts] == [[0, 6, 12, 18], [2, 8, 14, 20], [4, 10, 16, 22]]
    back = MicroBatch(1, 3).put(np.zeros_like(x), parts[1])
    assert np.asarray(back)[1::3].tolist() == x[1::3].tolist() and not np.asarray(back)[0::3].any()
    assert MicroBatch(0, 1).take(x) is x


def _sgd(k: int) -> TrainOptimizer:
    """Plain SGD: the parameters after one step show the gradient itself (Adam's normalisation
    would hide a wrong scale), with lr > 0 from the first step."""
    schedule = optax.constant_schedule(0.1)
    return TrainOptimizer(optax.with_extra_args_support(optax.sgd(schedule)),
                          accumulation_steps=k, max_consecutive_skips=0, schedule=schedule)


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("experiments/quickstart.py:smoke", OVERRIDES)
    dit = build_dit(cfg)
    rng = np.random.default_rng(0)
    shape = (BATCH, 2, 2, 2, cfg.tae.z_channels)
    batch = {"latent_mean": rng.normal(size=shape).astype(np.float32),
             "latent_logvar": np.full(shape, -2.0, np.float32),
             **cached_text_example(cfg.text, BATCH, seed=1)}
    null_text, null_mask = placeholder_nulls(cfg.text)
    make_step = lambda k: make_dit_train_step_on_embeddings(  # noqa: E731
        dit, _sgd(k), flow_cfg=cfg.flow, latent_shift=0.1, latent_scale=0.9,
        null_text=null_text, null_mask=null_mask, encoder_dropout={"byt5": 0.3})
    params = dit.init(jax.random.key(0))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(1), p.shape),
                          params)  # no zero-initialised gate: every gradient is non-zero
    whole = fast_jit(unsharded()(make_step(1)))
    state, metrics = whole(TrainState.create(params, _sgd(1)), batch, jax.random.key(7))
    return dict(cfg=cfg, dit=dit, batch=batch, make_step=make_step, params=params,
                reference=(jax.device_get(state.params), jax.device_get(metrics)))


def _assert_same_update(state, metrics, reference):
    ref_params, ref_metrics = reference
    assert float(metrics["loss"]) == pytest.approx(float(ref_metrics["loss"]), rel=1e-5)
    assert float(metrics["grad_norm"]) == pytest.approx(float(ref_metrics["grad_norm"]),
                                                        rel=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ref_params)[0],
                            jax.tree.leaves(jax.device_get(state.params))):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7,
                                   err_msg=jax.tree_util.keystr(path))


def test_four_micro_batches_of_8_update_like_one_batch_of_32(setup):
    step = fast_jit(unsharded()(setup["make_step"](4)))
    state, metrics = step(TrainState.create(setup["params"], _sgd(4)), setup["batch"],
                          jax.random.key(7))
    _assert_same_update(state, metrics, setup["reference"])


def test_accumulation_on_a_batch_sharded_mesh(setup):
    """data=2 x fsdp=4: each micro-batch has one row on every device (strided split), the
    accumulated gradient is pinned to the parameters' (fsdp) layout."""
    cfg, dit = setup["cfg"], setup["dit"]
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    rules = rules_from_preset(cfg.mesh.rules)
    optimizer = _sgd(4)
    state_sh = train_state_shardings(dit, optimizer, mesh, rules)
    batch_sh = batch_shardings(mesh, rules, setup["batch"])
    state = jax.device_put(TrainState.create(setup["params"], optimizer), state_sh)
    batch, key = to_device_batch(setup["batch"], batch_sh), jax.random.key(7)
    step = jit_train_step(setup["make_step"](4), mesh, rules, state_sh, batch_sh).lower(
        state, batch, key).compile({"xla_backend_optimization_level": 0})
    state, metrics = step(state, batch, key)
    _assert_same_update(state, metrics, setup["reference"])
