"""The same train steps on 1 device and on 8 CPU devices (data x fsdp, fsdp x tensor with
sequence parallelism, fsdp x context with each context-parallel attention, chunked kernels per
shard) give the same losses, the same raw gradients at every step, and the same parameters after
steps with a non-zero learning rate.

Gradients are compared before clipping and Adam normalise them (tests/parallel/
equality_helpers.py): both are blind to a gradient off by a constant factor, globally or per
coordinate, so parameters alone would pass a step whose gradient is doubled on one shard. The
DiT starts from perturbed parameters: at its zero-gated initialisation every gradient but the
final projection's is exactly 0 and would compare equal whatever the sharded step did."""
import functools

import jax
import numpy as np
import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit, build_tae, build_text_encoders
from mgen_jax.models.text.text_inputs import token_fields, tokenize_prompts
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.dit_step import make_dit_train_step
from mgen_jax.training.optimizer import learning_rate_schedule, make_optimizer
from mgen_jax.training.sharded_training import (batch_shardings, init_train_state,
                                                jit_train_step, to_device_batch,
                                                train_state_shardings)
from mgen_jax.training.tae_step import make_tae_train_step
from tests.parallel.equality_helpers import (assert_trees_close, captured_gradients,
                                             perturbed, with_gradient_capture,
                                             zero_gradient_leaves)

TINY = ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=2",
        "dit.scan_unroll=1",
        "text.encoders.ul2.max_length=16", "text.encoders.metaclip.max_length=16", "data.frames=8", "data.height=16", "data.width=16",
        "tae.ch=8", "tae.ch_mult=(1, 2)", "tae.norm_groups=4", "tae.z_channels=8",
        "tae.pixel_patch=(2, 4)", "tae.temporal_downsamples=1"]
MESHES = {
    "single": (["mesh.data=1"], 1),
    "data_fsdp": (["mesh.data=2", "mesh.fsdp=4"], 8),
    "fsdp_tensor": (["mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2"], 8),
    "fsdp_context": (["mesh.data=1", "mesh.fsdp=2", "mesh.context=4"], 8),
    "fsdp_context_tensor": (["mesh.data=1", "mesh.fsdp=2", "mesh.context=2", "mesh.tensor=2"], 8),
}
LATENT_SHAPE = (8, 2, 2, 4, 8)  # 16 tokens with the smoke config's 1x1x1 patches
# make_optimizer's warm-up (at least 1 step) gives lr 0 at step 0: 3 steps have 2 with lr > 0.
NUM_STEPS = 3
# fp32 on CPU, reductions in another order across shards. Gradient leaves: relative to the
# leaf's largest entry, and to the whole gradient's largest for entries whose exact gradient is 0
# (rounding noise); a doubled shard is off by 100% of its entries. Parameters: Adam divides by
# sqrt(v) + eps, so rounding noise d in a ~0 gradient entry becomes an update of about
# lr * d / eps (eps 1e-8), hence an atol in units of the peak lr; a wrong update is off by
# O(lr). Worst seen, as a fraction of each tolerance: losses 1%, gradients 6% (DiT, every
# layout) and 56% (TAE), parameters 1% (DiT) and 20% (TAE).
LOSS_RTOL = 1e-5
GRAD_RTOL, GRAD_ATOL_SCALE, GRAD_ATOL_GLOBAL = 1e-4, 1e-5, 1e-7
PARAM_RTOL, PARAM_ATOL_LR = 1e-4, 1e-2


def _run_steps(step, state, optimizer_cfg, total_steps, args_of_step):
    """NUM_STEPS steps: per step the loss, the grad_norm metric and the raw gradients; the
    params before and after, and the peak learning rate."""
    lrs = [float(learning_rate_schedule(optimizer_cfg, total_steps)(i)) for i in range(NUM_STEPS)]
    assert sum(lr > 0 for lr in lrs) >= 2, lrs
    run = {"loss": [], "grad_norm": [], "grads": [], "init": jax.device_get(state.params),
           "lr": max(lrs)}
    for i in range(NUM_STEPS):
        state, metrics = step(state, *args_of_step(i))
        run["loss"].append(float(metrics["loss"]))
        run["grad_norm"].append(float(metrics["grad_norm"]))
        run["grads"].append(captured_gradients(state))  # before the next step donates state
    run["params"] = jax.device_get(state.params)
    return run, state


def _assert_runs_equal(ref, run):
    # The reference really trained: some parameter moved by a good part of an lr-sized update.
    moved = max(float(np.max(np.abs(a - b))) for a, b in
                zip(jax.tree.leaves(ref["init"]), jax.tree.leaves(ref["params"])))
    assert moved > 0.5 * ref["lr"], (moved, ref["lr"])
    # No gradient is exactly 0 (it would compare equal whatever the step did) but the attention
    # key biases' (softmax is invariant to a shift shared by all keys). Their parameters move by
    # Adam-amplified rounding noise (see above) and are not compared; their gradients are: ~0.
    zero = zero_gradient_leaves(ref["grads"], rel=1e-6)
    assert all(p.endswith("['k']['bias']") for p in zero), sorted(zero)
    for i in range(NUM_STEPS):  # in order: the first step that differs is the one reported
        np.testing.assert_allclose(run["loss"][i], ref["loss"][i], rtol=LOSS_RTOL,
                                   err_msg=f"step {i} loss")
        assert_trees_close(ref["grads"][i], run["grads"][i], rtol=GRAD_RTOL,
                           atol_scale=GRAD_ATOL_SCALE, atol_global=GRAD_ATOL_GLOBAL,
                           what=f"step {i} gradient ")
        np.testing.assert_allclose(run["grad_norm"][i], ref["grad_norm"][i], rtol=LOSS_RTOL,
                                   err_msg=f"step {i} grad_norm metric")
    assert_trees_close(ref["params"], run["params"], rtol=PARAM_RTOL,
                       atol=PARAM_ATOL_LR * ref["lr"], skip=zero,
                       what=f"params after {NUM_STEPS} steps ")


def _dit_steps(mesh_name, extra=()):
    overrides, n = MESHES[mesh_name]
    cfg = load_config("experiments/quickstart.py:smoke", TINY + overrides + list(extra))
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:n])
    rules = rules_from_preset(cfg.mesh.rules)
    dit, text = build_dit(cfg), build_text_encoders(cfg)  # the three tiny encoders
    optimizer = with_gradient_capture(make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps))
    state_sh = train_state_shardings(dit, optimizer, mesh, rules)
    state = init_train_state(dit, optimizer, jax.random.key(0), state_sh)
    state = state.replace(params=perturbed(state.params, state_sh.params))  # no zero gradients
    text_sh = jax.tree.map(lambda _: replicated(mesh), text.abstract_params())
    text_params = text.init(jax.random.key(1), text_sh)
    rng = np.random.default_rng(0)
    tokens = token_fields(tokenize_prompts(
        cfg.text, ["a red circle moving left", 'a sign saying "STOP" going up'] * 4, fps=8))
    batch = {"latent_mean": rng.normal(size=LATENT_SHAPE).astype(np.float32),
             "latent_logvar": np.full(LATENT_SHAPE, -4.0, np.float32), **tokens}
    batch_sh = batch_shardings(mesh, rules, batch)
    empty = tokenize_prompts(cfg.text, [""])
    step = jit_train_step(
        make_dit_train_step(dit, text, optimizer, flow_cfg=cfg.flow, latent_shift=0.1,
                            latent_scale=1.3, empty_tokens={n: {k: v[0] for k, v in t.items()}
                                                            for n, t in empty.items()}),
        mesh, rules, state_sh, batch_sh, (text_sh,))
    device_batch = to_device_batch(batch, batch_sh)
    return _run_steps(step, state, cfg.dit_optimizer, cfg.dit_train.steps,
                      lambda i: (text_params, device_batch, jax.random.key(10 + i)))


@functools.cache
def _single_device_reference():
    return _dit_steps("single")[0]


# Whole-step equalities compile the step twice (~50 s each on 2 cores): `slow`, CI runs them;
# the attention-level sharded equalities (test_context_parallel.py) run by default.
@pytest.mark.slow
@pytest.mark.parametrize("mesh_name", ["data_fsdp", "fsdp_tensor"])
def test_dit_sharded_equals_single_device(mesh_name):
    ref = _single_device_reference()
    run, state = _dit_steps(mesh_name)
    if mesh_name == "fsdp_tensor":  # the step really ran sharded on the 8 devices
        kernel = state.params["blocks"]["ffn"]["gate"]["kernel"]
        assert tuple(kernel.sharding.spec) == (None, "fsdp", "tensor")
        assert kernel.addressable_shards[0].data.shape == (2, 8, 32)
        grad = state.opt_state[0].grads["blocks"]["ffn"]["gate"]["kernel"]
        assert grad.sharding.is_equivalent_to(kernel.sharding, kernel.ndim)
    _assert_runs_equal(ref, run)


@pytest.mark.parametrize("mesh_name,extra", [
    pytest.param("fsdp_context", ["dit.context_parallel=all_gather"], marks=pytest.mark.slow),
    pytest.param("fsdp_context", ["dit.context_parallel=ring"], marks=pytest.mark.slow),
    # Slow (the attention-level equality of ulysses, ring+chunked and chunked per shard, outputs
    # and q/k/v gradients, runs by default in tests/parallel/test_context_parallel.py);
    # `pytest -m slow` runs these whole steps.
    pytest.param("fsdp_context", ["dit.context_parallel=ulysses"], marks=pytest.mark.slow),
    pytest.param("fsdp_context_tensor", ["dit.context_parallel=ring", "dit.attention=chunked"],
                 marks=pytest.mark.slow),
    # chunked kernels run per shard (shard_map), self- and cross-attention
    pytest.param("fsdp_tensor", ["dit.attention=chunked"], marks=pytest.mark.slow),
])
def test_dit_context_parallel_and_per_shard_kernels_equal_single_device(mesh_name, extra):
    ref = _single_device_reference()
    run, _ = _dit_steps(mesh_name, extra=extra)
    _assert_runs_equal(ref, run)


def _tae_steps(mesh_name):
    overrides, n = MESHES[mesh_name]
    cfg = load_config("experiments/quickstart.py:smoke", TINY + overrides)
    mesh = build_mesh(cfg.mesh, devices=jax.devices()[:n])
    rules = rules_from_preset(cfg.mesh.rules)
    tae = build_tae(cfg)
    optimizer = with_gradient_capture(make_optimizer(cfg.tae_optimizer, cfg.tae_train.steps))
    state_sh = train_state_shardings(tae, optimizer, mesh, rules)
    state = init_train_state(tae, optimizer, jax.random.key(0), state_sh)
    video = np.random.default_rng(1).integers(0, 256, (8, 8, 16, 16, 3)).astype(np.uint8)
    batch_sh = batch_shardings(mesh, rules, {"video": video})
    step = jit_train_step(make_tae_train_step(tae, optimizer, 1e-6), mesh, rules, state_sh, batch_sh)
    device_batch = to_device_batch({"video": video}, batch_sh)
    return _run_steps(step, state, cfg.tae_optimizer, cfg.tae_train.steps,
                      lambda i: (device_batch, jax.random.key(3 + i)))[0]


@pytest.mark.slow  # the TAE's parameters and batch shard by the same rules as the DiT's
def test_tae_data_fsdp_equals_single_device():
    _assert_runs_equal(_tae_steps("single"), _tae_steps("data_fsdp"))
