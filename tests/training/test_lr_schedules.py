"""Learning-rate schedules (<phase>_optimizer.schedule): cosine and constant by step; plateau
lowers the lr once the loss has been flat for plateau_patience steps (not while it improves), and
its state is part of the checkpointed TrainState."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.optimizer import optimizer_config
from mgen_jax.configs.validation import ConfigError
from mgen_jax.training.optimizer import (learning_rate_schedule, make_optimizer,
                                         validation_plateau_update)
from mgen_jax.training.train_state import TrainState, apply_update

LR = 0.1


def _cfg(**overrides):
    cfg = optimizer_config(lr=LR, warmup_steps=10)
    cfg.update(**overrides)
    return cfg


def test_cosine_warms_up_then_decays_to_end_lr_fraction():
    lr = learning_rate_schedule(_cfg(schedule="cosine", end_lr_fraction=0.1), 110)
    expected = {0: 0.0, 5: LR / 2, 10: LR, 60: LR * (0.1 + 0.9 * 0.5), 110: LR * 0.1,
                200: LR * 0.1}
    for step, value in expected.items():
        assert float(lr(step)) == pytest.approx(value, rel=1e-5, abs=1e-9), step
    mid = 10 + 25  # a quarter into the decay: 0.1 + 0.9 * (1 + cos(pi / 4)) / 2
    assert float(lr(mid)) == pytest.approx(LR * (0.1 + 0.45 * (1 + math.cos(math.pi / 4))),
                                           rel=1e-5)


@pytest.mark.parametrize("schedule", ["cosine", "constant", "plateau"])
def test_a_zero_step_phase_builds_its_schedule(schedule):
    """A stage that takes its model over unchanged (steps=0, warmup 0) still builds its
    optimizer: every schedule must accept a phase of no steps."""
    lr = learning_rate_schedule(_cfg(schedule=schedule, warmup_steps=0), 0)
    assert np.isfinite(float(lr(0))) and float(lr(1)) == pytest.approx(LR)


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_constant_and_plateau_warm_up_then_hold(schedule):
    lr = learning_rate_schedule(_cfg(schedule=schedule), 110)
    for step, value in {0: 0.0, 5: LR / 2, 10: LR, 60: LR, 110: LR, 10_000: LR}.items():
        assert float(lr(step)) == pytest.approx(value, rel=1e-6), step


def _plateau_optimizer():
    """Windows of 2 steps, a drop by 1/2 after 4 steps (2 windows) without a better window."""
    return make_optimizer(_cfg(schedule="plateau", warmup_steps=0, plateau_factor=0.5,
                               plateau_window=2, plateau_patience=4), 100)


PARAMS = {"w": jnp.arange(3.0), "b": jnp.asarray(1.0)}


def _run(optimizer, losses, state=None):
    """Updates with gradient 0.01 x params and the given loss values: (state, lr metrics)."""
    step = jax.jit(lambda s, loss: apply_update(
        s, jax.tree.map(lambda p: 0.01 * p, s.params), loss, optimizer))
    state = TrainState.create(PARAMS, optimizer) if state is None else state
    lrs = []
    for loss in losses:
        state, metrics = step(state, jnp.float32(loss))
        lrs.append(float(metrics["lr"]))
    return state, lrs


def test_plateau_lowers_the_lr_after_a_flat_loss_only():
    # Window 1 (updates 1-2) sets the best loss; windows 2 and 3 do not beat it: after update 6
    # the lr halves (warm-up: update 0 at lr 0). Another 2 flat windows halve it again.
    _, lrs = _run(_plateau_optimizer(), [1.0] * 11)
    assert lrs == pytest.approx([0.0] + [LR] * 5 + [LR / 2] * 4 + [LR / 4])
    _, lrs = _run(_plateau_optimizer(), [1.0 / (i + 1) for i in range(11)])  # improving
    assert lrs == pytest.approx([0.0] + [LR] * 10)


def test_plateau_state_survives_a_checkpoint_round_trip(tmp_path):
    optimizer = _plateau_optimizer()
    state, _ = _run(optimizer, [1.0] * 7)  # reduced once, mid-window
    ckpt = PhaseCheckpointer(str(tmp_path))
    ckpt.save(7, state, meta={})
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                            state)
    restored, _, _ = ckpt.restore(7, abstract)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(jax.device_get(state)),
                    jax.tree.leaves(jax.device_get(restored))):
        np.testing.assert_array_equal(a, b)
    # Resumed, it continues as the uninterrupted run does.
    _, resumed = _run(optimizer, [1.0] * 4, restored)
    _, straight = _run(optimizer, [1.0] * 11)
    assert resumed == pytest.approx(straight[7:])


def test_plateau_on_validation_moves_only_with_the_recorded_validation_loss():
    """plateau_on=validation_loss: the steps' losses do not touch the lr; validations every 5
    steps with patience 10 steps = 2 validations without a better loss halve it."""
    cfg = _cfg(schedule="plateau", warmup_steps=0, plateau_factor=0.5, plateau_patience=10,
               plateau_on="validation_loss")
    optimizer = make_optimizer(cfg, 100)
    record = validation_plateau_update(cfg, validate_every=5)
    state, lrs = _run(optimizer, [1.0] * 6)  # flat training loss: ignored
    assert lrs == pytest.approx([0.0] + [LR] * 5)
    seen = []
    for value in (1.0, 0.9, 0.95, 0.92, 0.91, 0.93):  # best 0.9, then 4 validations not better
        state = state.replace(opt_state=record(state.opt_state, jnp.float32(value)))
        seen.append(float(optimizer.learning_rate(state.opt_state)))
    assert seen == pytest.approx([LR, LR, LR, LR / 2, LR / 2, LR / 4])
    state, lrs = _run(optimizer, [1.0] * 2, state)  # the updates use the lowered lr
    assert lrs == pytest.approx([LR / 4] * 2)


@pytest.mark.parametrize("override, key", [
    ("dit_optimizer.plateau_on=validation_loss", "dit_optimizer.plateau_on"),
    ("dit_optimizer.schedule=linear", "dit_optimizer.schedule"),
    ("dit_optimizer.plateau_patience=150", "dit_optimizer.plateau_patience"),
    ("dit_optimizer.accumulation_steps=3", "dit_optimizer.accumulation_steps"),
    ("dit_optimizer.ema_decay=1.0", "dit_optimizer.ema_decay"),
    ("tae_optimizer.max_consecutive_skips=-1", "tae_optimizer.max_consecutive_skips"),
])
def test_validation_names_the_bad_key(override, key):
    overrides = [override] + (["dit_optimizer.schedule=plateau"] if "plateau_" in override else [])
    with pytest.raises(ConfigError, match=key):
        load_config("experiments/quickstart.py:smoke", overrides)
