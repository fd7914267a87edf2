"""Averaging checkpoints (checkpointing/averaging.py) on tiny PhaseCheckpointer checkpoints:
identical ones average to themselves, different ones to their weighted mean, in the target's
shardings and dtypes, chunk by chunk; mismatched ones are refused naming the parameter."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from mgen_jax.checkpointing import averaging
from mgen_jax.checkpointing.averaging import (AveragedSource, average_checkpoints,
                                              normalized_weights)
from mgen_jax.checkpointing.manager import PhaseCheckpointer

# Odd sizes; "w" is split over the 8 devices in the target, "b" replicated, "h" bfloat16.
SHAPES = {"w": (8, 37), "blocks": {"b": (31, 5)}, "h": (13,)}
DTYPES = {"w": jnp.float32, "blocks": {"b": jnp.float32}, "h": jnp.bfloat16}


def _mesh():
    return jax.make_mesh((8,), ("x",))


def _target_shardings():
    mesh = _mesh()
    return {"w": NamedSharding(mesh, P("x")), "blocks": {"b": NamedSharding(mesh, P())},
            "h": NamedSharding(mesh, P())}


def _params(seed, shapes=SHAPES):
    keys = iter(jax.random.split(jax.random.key(seed), 8))
    return jax.tree.map(lambda s, d: jax.random.normal(next(keys), s, jnp.float32).astype(d),
                        shapes, DTYPES, is_leaf=lambda x: isinstance(x, tuple))


def _target():
    return jax.tree.map(lambda s, d, sh: jax.ShapeDtypeStruct(s, d, sharding=sh),
                        SHAPES, DTYPES, _target_shardings(), is_leaf=lambda x: isinstance(x, tuple))


def _save(directory, params, step=5, ema=None):
    """A train-state-like item: step, params, an optimizer state (with an EMA when given)."""
    opt_state = {"mu": jax.tree.map(jnp.zeros_like, params)}
    if ema is not None:
        opt_state["ema"] = ema
    ckpt = PhaseCheckpointer(str(directory))
    ckpt.save(step, {"step": jnp.asarray(step), "params": params, "opt_state": opt_state},
              meta={"step": step})
    ckpt.close()
    return AveragedSource(str(directory), step)


def _assert_tree_equal(actual, expected):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(e, np.float32))


def test_two_identical_checkpoints_average_to_themselves(tmp_path):
    params = _params(0)
    sources = [_save(tmp_path / "a", params), _save(tmp_path / "b", params, step=9)]
    averaged = average_checkpoints(sources, _target())
    _assert_tree_equal(averaged, params)
    for leaf, sharding in zip(jax.tree.leaves(averaged), jax.tree.leaves(_target_shardings())):
        assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim)


@pytest.mark.parametrize("chunk_bytes", [1, 600, averaging.DEFAULT_CHUNK_BYTES])
def test_different_checkpoints_average_to_their_weighted_mean(tmp_path, chunk_bytes):
    runs = [_params(seed) for seed in (1, 2, 3)]
    sources = [_save(tmp_path / str(i), p) for i, p in enumerate(runs)]
    weights = [0.5, 0.3, 0.2]
    averaged = average_checkpoints(sources, _target(), weights=[5, 3, 2], chunk_bytes=chunk_bytes)
    expected = jax.tree.map(
        lambda *xs: sum(w * x.astype(jnp.float32) for w, x in zip(weights, xs)), *runs)
    for a, e, dtype in zip(jax.tree.leaves(averaged), jax.tree.leaves(expected),
                           jax.tree.leaves(DTYPES)):
        assert a.dtype == dtype  # summed in float32, cast back to the target's dtype once
        np.testing.assert_allclose(np.asarray(a, np.float32),
                                   np.asarray(e.astype(dtype), np.float32), rtol=1e-6, atol=1e-6)
    uniform = average_checkpoints(sources[:2], _target())
    np.testing.assert_allclose(np.asarray(uniform["w"]), (runs[0]["w"] + runs[1]["w"]) / 2,
                               rtol=1e-6, atol=1e-7)


def test_averages_the_subtree_named_by_the_source(tmp_path):
    """An EMA kept inside the optimizer state is averaged, not the raw parameters."""
    a = _save(tmp_path / "a", _params(1), ema=_params(11))
    b = _save(tmp_path / "b", _params(2), ema=_params(12))
    ema = [dataclasses.replace(s, subtree=("opt_state", "ema")) for s in (a, b)]
    averaged = average_checkpoints(ema, _target())
    np.testing.assert_allclose(np.asarray(averaged["w"]),
                               (_params(11)["w"] + _params(12)["w"]) / 2, rtol=1e-6, atol=1e-7)


def test_streams_one_chunk_of_one_checkpoint_at_a_time(tmp_path, monkeypatch):
    """No restore asks for more than one chunk's leaves: never a whole tree, never N of them."""
    sources = [_save(tmp_path / str(i), _params(i)) for i in range(3)]
    requests = []
    real = averaging.restore_leaves

    def recording(directory, step, wanted, item="state", tree=None):
        requests.append((directory, sorted(wanted)))
        return real(directory, step, wanted, item, tree)

    monkeypatch.setattr(averaging, "restore_leaves", recording)
    average_checkpoints(sources, _target(), chunk_bytes=8 * 37 * 4)
    # Chunks {b, h} (672 bytes) and {w} (1184), each from every checkpoint in turn.
    assert [r[1] for r in requests] == (
        [[("params", "blocks", "b"), ("params", "h")]] * 3 + [[("params", "w")]] * 3)
    assert [r[0] for r in requests] == [s.directory for s in sources] * 2


def test_mismatched_shapes_are_refused_naming_the_parameter(tmp_path):
    other = {**SHAPES, "blocks": {"b": (31, 6)}}
    a = _save(tmp_path / "a", _params(1))
    b = _save(tmp_path / "b", _params(2, other))
    with pytest.raises(ValueError, match=r"parameter \['blocks'\]\['b'\] has shape \(31, 6\) in "
                                         r"checkpoint .*b@5 but \(31, 5\) in .*a@5"):
        average_checkpoints([a, b], _target())
    with pytest.raises(ValueError, match=r"\['blocks'\]\['b'\] has shape \(31, 6\) .* the "
                                         r"target model's is \(31, 5\)"):
        average_checkpoints([b, a], _target())


def test_different_structures_are_refused_naming_the_parameter(tmp_path):
    a = _save(tmp_path / "a", _params(1))
    fewer = {k: v for k, v in _params(2).items() if k != "h"}
    b = _save(tmp_path / "b", fewer)
    with pytest.raises(ValueError, match=r"parameter \['h'\] is missing from checkpoint .*b@5"):
        average_checkpoints([a, b], _target())
    with pytest.raises(ValueError, match=r"has no \['opt_state'\]\['ema'\] to average"):
        average_checkpoints([dataclasses.replace(a, subtree=("opt_state", "ema"))], _target())
    with pytest.raises(FileNotFoundError, match="no checkpoint step 7"):
        average_checkpoints([dataclasses.replace(a, step=7)], _target())


def test_weights_must_match_the_checkpoints():
    assert normalized_weights(None, 4) == [0.25] * 4
    assert normalized_weights([2, 6], 2) == [0.25, 0.75]
    with pytest.raises(ValueError, match="3 weights given for 2 checkpoints"):
        normalized_weights([1, 1, 1], 2)
    with pytest.raises(ValueError, match="non-negative"):
        normalized_weights([1, -1], 2)
    with pytest.raises(ValueError, match="not all zero"):
        normalized_weights([0, 0], 2)
