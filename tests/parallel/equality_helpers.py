"""Helpers for the sharded-vs-unsharded train-step equality tests: get the step's raw gradients
out of the jitted step, and compare pytrees leaf by leaf with messages that name the leaf.

Why gradients: the optimizer hides gradient bugs. Global-norm clipping removes any global scale,
and Adam (update ~ m / (sqrt(v) + eps), per coordinate) removes any per-coordinate constant
factor (up to eps), so a sharded step whose gradient is, e.g., doubled on one shard's slice of a
parameter updates the parameters (nearly) as the correct step would. The tests therefore
compare the raw gradients (before clipping and Adam) as well as the parameters after several
steps with a non-zero learning rate (make_optimizer's warm-up gives lr 0 at step 0, so that
takes >= 3 steps), starting from parameters at which no gradient is exactly 0 (`perturbed`).
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class CapturedGradients(NamedTuple):
    grads: Any  # the last raw gradient pytree the optimizer received, laid out like the params


def capture_gradients() -> optax.GradientTransformation:
    """Identity transformation whose state is the gradient it was last given. Chained in front of
    the real optimizer (`with_gradient_capture`) the train state carries the step's raw
    gradients out of the jitted step: computed by the step itself, under its jit and shardings,
    before clipping; `train_state_shardings` lays them out like the params (optax
    tree_map_params sees a params-shaped tree). The real optimizer's numbers are unchanged."""
    def init(params):
        return CapturedGradients(jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del state, params
        return updates, CapturedGradients(updates)

    return optax.GradientTransformation(init, update)


def with_gradient_capture(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    return optax.chain(capture_gradients(), optimizer)


def captured_gradients(state) -> Any:
    """The raw gradients of the step that produced `state` (a TrainState whose optimizer is
    `with_gradient_capture(...)`), fetched to the host."""
    return jax.device_get(state.opt_state[0].grads)


def perturbed(params, shardings, scale: float = 0.05, seed: int = 0):
    """params + scale * N(0, 1) per leaf (numpy noise: the same numbers on any mesh, nothing to
    compile), placed in `shardings`. A fresh DiT is a degenerate point: with its zero-initialised
    gates and output projections every gradient but the final projection's is exactly 0, so a
    wrong gradient anywhere else (self-attention, FFN, context-parallel backward) would still
    compare equal. Perturbing every parameter (as tests/models/test_dit.py does) makes every
    gradient non-zero."""
    rng = np.random.default_rng(seed)
    host = jax.device_get(params)
    noisy = jax.tree.map(lambda x: (x + scale * rng.standard_normal(x.shape)).astype(x.dtype), host)
    return jax.device_put(noisy, shardings)


def _leaf_max(x) -> float:
    x = np.asarray(x)
    return float(np.max(np.abs(x))) if x.size else 0.0


def assert_trees_close(ref, got, *, rtol: float, atol: float = 0.0, atol_scale: float = 0.0,
                       atol_global: float = 0.0, skip: frozenset = frozenset(),
                       what: str) -> None:
    """Leafwise |got - ref| <= atol + atol_scale * max|ref leaf| + atol_global * max|ref| +
    rtol * |ref|. For gradients: fp32 reductions in another order err relative to the leaf's
    magnitude (atol_scale), and a leaf whose exact gradient is 0 holds only rounding noise,
    relative to the whole gradient (atol_global). Leaves whose key path is in `skip` are not
    compared. The message names the leaf (`what` + its key path)."""
    ref_leaves, ref_def = jax.tree_util.tree_flatten_with_path(ref)
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    assert ref_def == got_def, f"{what}: pytree structures differ"
    global_max = max((_leaf_max(a) for _, a in ref_leaves), default=0.0)
    for (path, a), b in zip(ref_leaves, got_leaves):
        name = jax.tree_util.keystr(path)
        if name in skip:
            continue
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{what}{name}: {a.shape} vs {b.shape}"
        np.testing.assert_allclose(
            b, a, rtol=rtol, atol=atol + atol_scale * _leaf_max(a) + atol_global * global_max,
            err_msg=f"{what}{name}")


def zero_gradient_leaves(grads_per_step, rel: float) -> frozenset:
    """Key paths of the leaves whose gradient is rounding noise (max|g| <= rel x the largest
    entry of the whole gradient) at every step. Adam turns rounding noise d into updates of
    about lr * min(1, d / eps) (m / sqrt(v) is about +-1 whatever the scale), so such parameters
    move by noise and cannot be compared after a step with lr > 0; their gradients still are
    (they must stay ~0)."""
    noise = None
    for grads in grads_per_step:
        leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
        global_max = max((_leaf_max(g) for _, g in leaves), default=0.0)
        here = {jax.tree_util.keystr(p) for p, g in leaves if _leaf_max(g) <= rel * global_max}
        noise = here if noise is None else noise & here
    return frozenset(noise or ())
