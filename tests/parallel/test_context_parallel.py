"""Context-parallel self-attention on 8 CPU devices: every strategy's output and q/k/v gradients
equal the unsharded XLA kernel's, the sequence really is split (the compiled program holds the
strategy's collective), and bad shapes raise."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding

from mgen_jax.configs.mesh import mesh_config
from mgen_jax.models.attention.xla import xla_attention
from mgen_jax.models.attention.context_parallel import QKV_AXES, context_parallel_attention
from mgen_jax.configs.registries import CONTEXT_PARALLEL
from mgen_jax.parallel.logical_rules import (DEFAULT_RULES, activation_sharding, logical_to_spec,
                                             unsharded)
from mgen_jax.parallel.mesh import build_mesh

RULES = DEFAULT_RULES
STRATEGIES = list(CONTEXT_PARALLEL)
# name: (mesh axes, B, L, heads for all_gather/ring, heads for ulysses). B=3 over data=2 leaves
# the batch unsharded; H=6 over tensor=2 gives 3 local heads (ulysses needs local heads % n).
CASES = {
    "data2_context4": ({"data": 2, "context": 4}, 3, 24, 4, 4),
    "fsdp2_context2_tensor2": ({"data": 1, "fsdp": 2, "context": 2, "tensor": 2}, 2, 40, 6, 4),
    "context8": ({"data": 1, "context": 8}, 2, 40, 6, 8),
}
# Segment boundaries off the shard boundaries (shards of 24 are multiples of 3, of 40 of 5).
CUTS = {24: [[5, 13, 19], [7, 11, 22], [2, 17, 23]], 40: [[7, 18, 31], [3, 22, 24], [11, 29, 38]]}
COLLECTIVE = {"all_gather": "all-gather", "ring": "collective-permute", "ulysses": "all-to-all"}
D = 8


def _inputs(b, length, heads):
    rng = np.random.default_rng(length * 10 + heads)
    q, k, v, w = (rng.normal(size=(b, length, heads, D)).astype(np.float32) for _ in range(4))
    seg = np.stack([np.searchsorted(CUTS[length][i], np.arange(length), side="right")
                    for i in range(b)]).astype(np.int32)
    key_mask = rng.random((b, length)) > 0.15
    key_mask[0, -4:] = False  # padded tail
    key_mask[1, seg[1] == 1] = False  # a whole segment without keys: its queries return zeros
    return q, k, v, w, key_mask, seg


def _loss_and_grads(attention, w, key_mask, segment_ids):
    def loss(q, k, v):
        out = attention(q, k, v, key_mask, segment_ids)
        return jnp.sum(out * w), out
    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


@functools.lru_cache(maxsize=None)
def _reference(b, length, heads, masks):
    q, k, v, w, key_mask, seg = _inputs(b, length, heads)
    key_mask, segs = _masks(masks, key_mask, seg)
    return jax.device_get(jax.jit(_loss_and_grads(xla_attention, w, key_mask, segs))(q, k, v))


def _masks(masks, key_mask, seg):
    return (key_mask if "key_mask" in masks else None,
            (seg, seg) if "segments" in masks else None)


def _check(case, strategy, masks, backend="xla"):
    axes, b, length, heads, ulysses_heads = CASES[case]
    heads = ulysses_heads if strategy == "ulysses" else heads
    mesh = build_mesh(mesh_config(**axes))
    q, k, v, w, key_mask, seg = _inputs(b, length, heads)
    key_mask, segs = _masks(masks, key_mask, seg)
    spec = logical_to_spec(QKV_AXES, RULES, mesh, q.shape)
    assert spec[1] == "context"
    sharding = NamedSharding(mesh, spec)
    qkv = [jax.device_put(x, sharding) for x in (q, k, v)]
    step = jax.jit(_loss_and_grads(
        lambda *a: context_parallel_attention(*a, strategy=strategy, backend=backend),
        w, key_mask, segs))
    with activation_sharding(mesh, RULES):
        compiled = step.lower(*qkv).compile()
    (loss, out), grads = compiled(*qkv)

    # The strategy's collective, issued from inside the shard_map (a GSPMD fallback on the local
    # kernel could also all-gather, but not from there).
    assert re.search(COLLECTIVE[strategy] + r"[-\w]*\([^\n]*op_name=\"[^\"]*shard_map",
                     compiled.as_text())
    assert out.sharding.is_equivalent_to(sharding, out.ndim)
    (ref_loss, ref_out), ref_grads = _reference(b, length, heads, masks)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    np.testing.assert_allclose(out, ref_out, atol=1e-5, rtol=1e-5)
    for name, g, ref_g in zip("qkv", grads, ref_grads):
        np.testing.assert_allclose(g, ref_g, atol=1e-5, rtol=1e-5, err_msg=f"d{name}")
    return ref_out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_unsharded_with_key_mask_and_packed_segments(strategy, case):
    ref_out = _check(case, strategy, ("key_mask", "segments"))
    # The fully masked segment's query rows are zeros, so that path is exercised.
    start, end = CUTS[CASES[case][2]][1][:2]
    assert np.all(ref_out[1, start:end] == 0) and np.any(ref_out[1, :start] != 0)


@pytest.mark.parametrize("masks", [(), ("key_mask",), ("segments",)])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_matches_unsharded_mask_variants(strategy, masks):
    _check("data2_context4", strategy, masks)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_runs_the_chunked_kernel_per_shard(strategy):  # ring: flash blocks merged by their lse
    _check("fsdp2_context2_tensor2", strategy, ("key_mask", "segments"), backend="chunked")
    _check("context8", strategy, ("key_mask", "segments"), backend="chunked")


def test_no_context_axis_is_the_local_kernel():
    q, k, v, _, key_mask, seg = _inputs(2, 24, 4)
    ref = xla_attention(q, k, v, key_mask, (seg, seg))
    for strategy in STRATEGIES:  # deliberately unsharded
        with unsharded():
            out = context_parallel_attention(q, k, v, key_mask, (seg, seg), strategy=strategy)
        np.testing.assert_allclose(out, ref, atol=1e-6)
    mesh = build_mesh(mesh_config(data=8))  # context size 1
    with activation_sharding(mesh, RULES):
        lowered = jax.jit(lambda *a: context_parallel_attention(*a, strategy="ring")).lower(
            q, k, v, key_mask, (seg, seg))
    assert "collective-permute" not in lowered.compile().as_text()


def test_bad_shapes_raise():
    mesh = build_mesh(mesh_config(data=1, context=8))
    x = jnp.zeros((2, 20, 8, D))
    with pytest.raises(ValueError, match="length 20 is not divisible by the context size 8"):
        context_parallel_attention(x, x, x, strategy="ring", mesh=mesh, rules=RULES)
    x = jnp.zeros((2, 24, 6, D))
    with pytest.raises(ValueError, match="ulysses: 6 heads"):
        context_parallel_attention(x, x, x, strategy="ulysses", mesh=mesh, rules=RULES)
    with pytest.raises(ValueError, match="strategy 'tree' unknown"):
        context_parallel_attention(x, x, x, strategy="tree")
