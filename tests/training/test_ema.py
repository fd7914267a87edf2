"""The EMA of the parameters (<phase>_optimizer.ema_decay): the recurrence, kept in the optimizer
state and sharded like the parameters, left alone by a skipped update, used for sampling by
inference/loading.py; off, the optimizer state keeps the structure it had before EMA existed."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.optimizer import optimizer_config
from mgen_jax.inference.loading import _restore_phase
from mgen_jax.models.builders import build_dit
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import train_state_shardings
from mgen_jax.training.train_state import TrainState, apply_update
from mgen_jax.workdir import checkpoint_dir

DECAY = 0.8


def _optimizer(**overrides):
    cfg = optimizer_config(lr=0.1, warmup_steps=0)
    cfg.update(schedule="constant", ema_decay=DECAY, **overrides)
    return make_optimizer(cfg, 100)


@jax.jit
def _toy_step(state, loss_scale):
    """Loss 0.5 |params|^2 x loss_scale (NaN: a non-finite step)."""
    grads = jax.tree.map(lambda p: p * loss_scale, state.params)
    loss = 0.5 * sum(jnp.sum(p ** 2) for p in jax.tree.leaves(state.params)) * loss_scale
    return apply_update(state, grads, loss, OPTIMIZER)


OPTIMIZER = _optimizer()
PARAMS = {"w": jnp.arange(4.0) - 1.5, "b": jnp.asarray(2.0)}


def test_ema_follows_the_recurrence_and_ignores_skipped_updates():
    state = TrainState.create(PARAMS, OPTIMIZER)
    expected = jax.device_get(PARAMS)  # the EMA starts at the initial parameters
    for scale in (1.0, 1.0, np.nan, 1.0, 1.0):
        state, metrics = _toy_step(state, scale)
        params = jax.device_get(state.params)
        if np.isnan(scale):
            assert float(metrics["skipped"]) == 1.0  # parameters and EMA stay as they were
        else:
            expected = jax.tree.map(lambda e, p: DECAY * e + (1 - DECAY) * p, expected, params)
        ema = jax.device_get(state.ema_params)
        for name in PARAMS:
            np.testing.assert_allclose(ema[name], expected[name], rtol=1e-6, err_msg=name)
    assert not np.allclose(jax.device_get(state.ema_params)["w"], params["w"])
    assert state.sampling_params() is state.ema_params


def test_without_ema_the_optimizer_state_keeps_its_old_structure():
    """ema_decay 0 (and no skip counter, no plateau): what checkpoints held before EMA, the guard
    and plateau existed, so they restore; sampling then uses the parameters."""
    cfg = optimizer_config(lr=0.1, warmup_steps=10)
    cfg.max_consecutive_skips = 0
    old = optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                      optax.adamw(lambda count: count * 0.0, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                                  weight_decay=cfg.weight_decay))
    state = TrainState.create(PARAMS, make_optimizer(cfg, 100))
    assert jax.tree.structure(state.opt_state) == jax.tree.structure(old.init(PARAMS))
    assert state.ema_params is None and state.sampling_params() is state.params


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("experiments/quickstart.py:smoke",
                      ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=1",
                       "dit.scan_unroll=1", f"dit_optimizer.ema_decay={DECAY}",
                       "dit_optimizer.schedule=plateau", "dit_optimizer.plateau_window=1",
                       "dit_optimizer.plateau_patience=1", "mesh.data=2", "mesh.fsdp=4"])
    return cfg, build_dit(cfg)


def test_ema_is_sharded_like_the_parameters(tiny):
    cfg, dit = tiny
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    shardings = train_state_shardings(dit, optimizer, mesh, rules_from_preset(cfg.mesh.rules))
    assert shardings.ema_params == shardings.params
    assert any(s.spec != jax.sharding.PartitionSpec() for s in jax.tree.leaves(shardings.params))


def test_loading_samples_with_the_ema(tiny, tmp_path):
    cfg, dit = tiny
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    params = dit.init(jax.random.key(0))
    state = TrainState.create(params, optimizer)  # EMA = these params
    state = state.replace(params=jax.tree.map(lambda p: p + 1.0, params))
    workdir = str(tmp_path)
    PhaseCheckpointer(checkpoint_dir(workdir, "dit")).save(3, state, meta={})
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:8])
    loaded, _, _, step = _restore_phase(workdir, cfg, "dit", dit, mesh,
                                        rules_from_preset(cfg.mesh.rules))
    assert step == 3
    for a, b in zip(jax.tree.leaves(jax.device_get(params)),
                    jax.tree.leaves(jax.device_get(loaded))):
        np.testing.assert_array_equal(a, b)
