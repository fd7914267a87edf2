"""Helpers for the sharded-vs-unsharded train-step equality tests: get the step's raw gradients
out of the jitted step, and compare pytrees leaf by leaf with messages that name the leaf.

Why gradients: the optimizer hides gradient bugs. Global-norm clipping removes any global scale,
and Adam (update ~ m / sqrt(v), per coordinate) removes any per-coordinate constant factor, so
a sharded step whose gradient is, e.g., doubled on one shard's slice of a parameter updates the
parameters exactly as the correct step would. The tests therefore compare the raw gradients
(before clipping and Adam) as well as the parameters after several steps with a non-zero
learning rate (make_optimizer's warm-up gives lr 0 at step 0, so that takes >= 3 steps).
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


def assert_trees_close(ref, got, *, rtol: float, atol: float = 0.0, atol_scale: float = 0.0,
                       what: str) -> None:
    """Leafwise |got - ref| <= atol + atol_scale * max|ref leaf| + rtol * |ref|: atol_scale for
    gradients, since fp32 reductions in another order err relative to the leaf's magnitude.
    The message names the leaf (`what` + its key path)."""
    ref_leaves = jax.tree_util.tree_flatten_with_path(ref)[0]
    got_leaves, got_def = jax.tree_util.tree_flatten(got)
    assert jax.tree_util.tree_structure(ref) == got_def, f"{what}: pytree structures differ"
    for (path, a), b in zip(ref_leaves, got_leaves):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{what}{jax.tree_util.keystr(path)}: {a.shape} vs {b.shape}"
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol + atol_scale * scale,
                                   err_msg=f"{what}{jax.tree_util.keystr(path)}")


def worst_mismatch(ref, got) -> tuple[float, str]:
    """(max over leaves of max|got - ref| / max|ref|, that leaf's path): to size tolerances."""
    worst = (0.0, "")
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ref)[0], jax.tree.leaves(got)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = np.max(np.abs(a)) if a.size else 0.0
        if scale > 0:
            worst = max(worst, (float(np.max(np.abs(b - a)) / scale), jax.tree_util.keystr(path)))
    return worst
