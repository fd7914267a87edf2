"""The non-finite guard (training/guards.py): a NaN batch skips its update (state unchanged but
for the step, counted in the metrics); max_consecutive_skips of them in a row stop the run with
a NonFiniteError naming the step and the culprit, before a checkpoint of that step; the guarded
step refuses implicit host-to-device transfers."""
import functools
import json
import os

import grain
import jax
import numpy as np
import pytest

from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit
from mgen_jax.models.text.text_inputs import cached_text_example, placeholder_nulls
from mgen_jax.parallel.logical_rules import unsharded
from mgen_jax.training.dit_step import make_dit_train_step_on_embeddings
from mgen_jax.training.guards import NonFiniteError, guard_step
from mgen_jax.training.loop import run_training
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.train_state import TrainState

OVERRIDES = ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=1",
             "dit.scan_unroll=1", "dit_optimizer.warmup_steps=0",
             "dit_optimizer.max_consecutive_skips=3"]
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _batch(cfg, nan: bool) -> dict:
    rng = np.random.default_rng(0)
    shape = (4, 2, 2, 2, cfg.tae.z_channels)
    mean = rng.normal(size=shape).astype(np.float32)
    if nan:
        mean[1, 0, 0, 0, 0] = np.nan  # one bad value in one clip: the test hook
    return {"latent_mean": mean, "latent_logvar": np.full(shape, -4.0, np.float32),
            **cached_text_example(cfg.text, shape[0])}


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("experiments/quickstart.py:smoke", OVERRIDES)
    dit = build_dit(cfg)
    optimizer = make_optimizer(cfg.dit_optimizer, 100)
    null_text, null_mask = placeholder_nulls(cfg.text)
    step = fast_jit(unsharded()(make_dit_train_step_on_embeddings(
        dit, optimizer, flow_cfg=cfg.flow, latent_shift=0.0, latent_scale=1.0,
        null_text=null_text, null_mask=null_mask)))
    state = TrainState.create(dit.init(jax.random.key(0)), optimizer)
    good = jax.device_put(_batch(cfg, nan=False))
    for i in range(2):  # past the warm-up's lr 0: the state has moved
        state, _ = step(state, good, jax.random.key(i))
    return dict(step=step, state=state, good=good, nan=jax.device_put(_batch(cfg, nan=True)),
                host_nan=_batch(cfg, nan=True))


def _assert_trees_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(y), np.asarray(x),
                                      err_msg=jax.tree_util.keystr(path))


def test_a_nan_batch_is_skipped_and_counted(setup):
    step, before = setup["step"], setup["state"]
    state, metrics = step(before, setup["nan"], jax.random.key(5))
    assert not np.isfinite(float(metrics["loss"]))
    assert float(metrics["skipped"]) == 1.0 and int(metrics["consecutive_skips"]) == 1
    assert int(state.step) == int(before.step) + 1
    _assert_trees_equal(jax.device_get(before.params), jax.device_get(state.params))
    _assert_trees_equal(jax.device_get(before.opt_state.inner_state),
                        jax.device_get(state.opt_state.inner_state))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(state)))

    state, metrics = step(state, setup["good"], jax.random.key(6))  # the next good batch
    assert float(metrics["skipped"]) == 0.0 and int(metrics["consecutive_skips"]) == 0
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         jax.device_get(before.params), jax.device_get(state.params))
    assert any(jax.tree.leaves(moved))


def test_consecutive_nan_batches_stop_the_run_before_their_checkpoint(setup, tmp_path):
    """max_consecutive_skips=3, checkpoints every 2 steps: step 2 is saved (2 skips), step 3
    reaches the limit and the run stops before any later checkpoint, naming step 3, the loss
    and a gradient."""
    batches = grain.MapDataset.range(100).map(lambda _: setup["host_nan"]).to_iter_dataset()
    ckpt = PhaseCheckpointer(str(tmp_path / "ckpt"))
    writer = MetricsWriter(str(tmp_path), "dit")
    with pytest.raises(NonFiniteError) as info:
        run_training(phase="dit", step_fn=setup["step"], state=setup["state"], num_steps=10,
                     iterator=iter(batches), to_device=jax.device_put, key=jax.random.key(0),
                     checkpointer=ckpt, writer=writer, log_every=1, checkpoint_every=2,
                     show_progress=False)
    writer.close()
    message = str(info.value)
    first = int(jax.device_get(setup["state"].step))  # the run's steps are counted from here
    assert f"step {first + 3}: 3 consecutive updates skipped" in message, message
    assert "the loss (nan) and the gradient of [" in message, message
    assert ckpt.latest_step() == first + 2
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [m["skipped"] for m in logged] == [1.0, 1.0, 1.0]
    assert [m["consecutive_skips"] for m in logged] == [1.0, 2.0, 3.0]
    assert not any(k.startswith("guard/") for m in logged for k in m)


def test_the_guarded_step_refuses_implicit_host_to_device_transfers(setup):
    guarded = guard_step(setup["step"], phase="dit", start=0, checkpoint_every=10, num_steps=10)
    with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
        guarded(setup["state"], setup["host_nan"], jax.random.key(0))  # numpy, not placed
