"""Every attention kernel against the plain xla kernel: values and q/k/v gradients, odd lengths,
key masks (with a fully masked example), segment ids, both, cross-attention shapes; plus the
chunked kernel's linear memory, the cuDNN wrapper's layout/mask logic (through the API's xla
implementation, since CI has no GPU), splash in Pallas interpret mode and compiled for TPU."""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from mgen_jax.benchmarks.attention_memory import attention_memory_vs_length
from mgen_jax.configs.registries import ATTENTION_BACKENDS
from mgen_jax.models.attention import dot_product_attention, resolve_backend
from mgen_jax.models.attention.chunked import chunked_attention, chunked_attention_with_lse
from mgen_jax.models.attention.cudnn import cudnn_attention
from mgen_jax.models.attention.xla import attention_mask, xla_attention

B, LQ, LK, H, D = 2, 37, 53, 3, 8
MASK_CASES = ("none", "key_mask", "segments", "both")


def _inputs(lq=LQ, lk=LK, seed=0, dtype=jnp.float32):
    kq, kk, kv, kw = jax.random.split(jax.random.key(seed), 4)
    q = jax.random.normal(kq, (B, lq, H, D), dtype)
    k = jax.random.normal(kk, (B, lk, H, D), dtype)
    v = jax.random.normal(kv, (B, lk, H, D), dtype)
    cotangent = jax.random.normal(kw, (B, lq, H, D), jnp.float32)
    return q, k, v, cotangent


def _masks(case, lq=LQ, lk=LK):
    """(key_mask, segment_ids). The key mask leaves example 1 with no key at all; the segment ids
    give query segment 3 no key (kv ids only reach 2), so both paths produce empty rows."""
    key_mask = segment_ids = None
    if case in ("key_mask", "both"):
        key_mask = jax.random.bernoulli(jax.random.key(7), 0.7, (B, lk)).at[1].set(False)
    if case in ("segments", "both"):
        q_seg = jnp.stack([jnp.arange(lq) // 10, (jnp.arange(lq) + 5) // 10]).astype(jnp.int32)
        kv_seg = jnp.stack([jnp.arange(lk) // 18, (jnp.arange(lk) + 3) // 19]).astype(jnp.int32)
        segment_ids = (q_seg, kv_seg)
    return key_mask, segment_ids


def _assert_close(actual, expected, rtol=1e-5):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert actual.shape == expected.shape
    assert np.isfinite(actual).all()
    # Relative to the tensor's scale, so gradient entries near zero do not need an atol each.
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def _value_and_grads(fn, q, k, v, cotangent):
    """Output and the q/k/v gradients of <output, cotangent>, in one compiled function."""
    @jax.jit
    def run(q, k, v, cotangent):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(cotangent.astype(out.dtype))
    return run(q, k, v, cotangent)


def _check_against_xla(kernel, case, lq=LQ, lk=LK, rtol=1e-5):
    q, k, v, cotangent = _inputs(lq, lk)
    key_mask, segment_ids = _masks(case, lq, lk)
    out, grads = _value_and_grads(lambda *a: kernel(*a, key_mask, segment_ids), q, k, v, cotangent)
    ref, ref_grads = _value_and_grads(lambda *a: xla_attention(*a, key_mask, segment_ids),
                                      q, k, v, cotangent)
    assert out.dtype == q.dtype
    _assert_close(out, ref, rtol)
    for g, g_ref in zip(grads, ref_grads):
        _assert_close(g, g_ref, rtol)
    mask = attention_mask(key_mask, segment_ids, B, lq, lk)
    if mask is not None:  # every case here has rows without keys: they must be exactly zero
        empty = ~np.asarray(mask[:, 0].any(-1))
        assert empty.any()
        assert (np.asarray(out)[empty] == 0).all()


# --- chunked -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", MASK_CASES)
def test_chunked_matches_xla(case):
    # Blocks of 16: 3 query blocks (37 -> 48 padded) and 4 key blocks (53 -> 64 padded).
    _check_against_xla(lambda *a: chunked_attention(*a, block_q=16, block_kv=16), case)


def test_chunked_self_attention_packed_segments():
    q, k, v, cotangent = _inputs(45, 45)
    seg = jnp.stack([jnp.arange(45) // 9, jnp.arange(45) // 20]).astype(jnp.int32)
    out, grads = _value_and_grads(lambda *a: chunked_attention(*a, None, (seg, seg), block_q=8,
                                                               block_kv=32), q, k, v, cotangent)
    ref, ref_grads = _value_and_grads(lambda *a: xla_attention(*a, None, (seg, seg)), q, k, v, cotangent)
    for a, b in zip((out, *grads), (ref, *ref_grads)):
        _assert_close(a, b)


def test_chunked_lse_and_its_gradient():
    q, k, v, _ = _inputs()
    key_mask, _ = _masks("key_mask")

    def reference_lse(q, k):
        s = jnp.einsum("bqhd,bkhd->bhqk", q, k) * D ** -0.5
        return jax.nn.logsumexp(jnp.where(key_mask[:, None, None, :], s, -jnp.inf), axis=-1)

    lse_fn = lambda q, k: chunked_attention_with_lse(q, k, v, key_mask, block_q=16, block_kv=16)[1]
    # Gradient of the summed lse of example 0 (example 1 has no key: lse = -inf there).
    lse, grads = jax.jit(lambda q, k: (
        lse_fn(q, k), jax.grad(lambda q, k: lse_fn(q, k)[0].sum(), (0, 1))(q, k)))(q, k)
    ref = reference_lse(q, k)
    ref_grads = jax.grad(lambda q, k: reference_lse(q, k)[0].sum(), (0, 1))(q, k)
    assert lse.shape == (B, H, LQ) and lse.dtype == jnp.float32
    assert np.isneginf(np.asarray(lse[1])).all()
    _assert_close(lse[0], ref[0])
    for g, g_ref in zip(grads, ref_grads):  # the softmax-weighted keys / queries
        _assert_close(g, g_ref)


def test_chunked_bfloat16_keeps_dtype():
    q, k, v, _ = _inputs(dtype=jnp.bfloat16)
    key_mask, segment_ids = _masks("both")
    out = jax.jit(lambda *a: chunked_attention(*a, block_q=16, block_kv=16))(q, k, v, key_mask,
                                                                           segment_ids)
    assert out.dtype == jnp.bfloat16
    _assert_close(out, xla_attention(q, k, v, key_mask, segment_ids), rtol=2e-2)


def test_chunked_forward_backward_memory_is_linear_in_length():
    # Compiled (not run) forward+backward; the same function `mgen bench` reports at 8K/16K.
    rows = attention_memory_vs_length(("xla", "chunked"), (2048, 4096), heads=2, head_dim=16)
    growth = {r["backend"]: r for r in rows if r["length"] == 4096}
    assert growth["xla"]["temp_growth"] > 3.5  # the [Lq, Lk] scores: quadratic growth is visible
    assert growth["chunked"]["temp_growth"] <= 2.2
    assert growth["chunked"]["peak_growth"] <= 2.2


# --- cuDNN (wrapper logic on CPU through the API's xla implementation) ---------------------------

@pytest.mark.parametrize("case", MASK_CASES)
def test_cudnn_wrapper_matches_xla(case):
    kernel = lambda *a: cudnn_attention(*a, compute_dtype=jnp.float32, _implementation="xla")
    _check_against_xla(kernel, case)


def test_cudnn_wrapper_prefix_key_mask_as_lengths():
    lengths = jnp.array([20, 0])  # example 1: no key at all
    key_mask = jnp.arange(LK)[None, :] < lengths[:, None]
    q, k, v, cotangent = _inputs()
    out, grads = _value_and_grads(
        lambda *a: cudnn_attention(*a, key_mask, key_mask_is_prefix=True, compute_dtype=jnp.float32,
                                   _implementation="xla"), q, k, v, cotangent)
    ref, ref_grads = _value_and_grads(lambda *a: xla_attention(*a, key_mask), q, k, v, cotangent)
    for a, b in zip((out, *grads), (ref, *ref_grads)):
        _assert_close(a, b)
    assert (np.asarray(out[1]) == 0).all()


def test_cudnn_wrapper_casts_float32_to_bfloat16_and_back():
    q, k, v, _ = _inputs()
    out = cudnn_attention(q, k, v, *_masks("both"), _implementation="xla")
    assert out.dtype == jnp.float32
    _assert_close(out, xla_attention(q, k, v, *_masks("both")), rtol=3e-2)


def test_cudnn_refuses_a_platform_without_cuda():
    q, k, v, _ = _inputs()
    with pytest.raises(ValueError, match=r"cudnn.*'cpu'"):
        cudnn_attention(q, k, v)
    with pytest.raises(ValueError, match="cudnn"):
        dot_product_attention(q, k, v, backend="cudnn")


# --- splash --------------------------------------------------------------------------------------

def test_splash_block_sizes_and_segment_ids():
    from mgen_jax.models.attention.splash import block_size_for, kernel_segment_ids, rows_with_any_key

    assert [block_size_for(n, 512) for n in (128, 640, 1024, 1536)] == [128, 128, 512, 512]
    assert block_size_for(768, 512) == 384 and block_size_for(256, 128) == 128
    key_mask, segment_ids = _masks("both")
    assert kernel_segment_ids(None, None, B, 128, 256, 128, 256) is None
    q_ids, kv_ids = kernel_segment_ids(key_mask, segment_ids, B, LQ, LK, 128, 128)
    assert q_ids.shape == kv_ids.shape == (B, 128) and q_ids.dtype == kv_ids.dtype == jnp.int32
    # The ids reproduce the mask on the real positions and mask every padded key.
    allowed = np.asarray(q_ids[:, :, None] == kv_ids[:, None, :])
    dense = attention_mask(key_mask, segment_ids, B, LQ, LK)[:, 0]
    np.testing.assert_array_equal(allowed[:, :LQ, :LK], dense)
    assert not allowed[:, :, LK:].any()
    for case in MASK_CASES[1:]:
        km, seg = _masks(case)
        np.testing.assert_array_equal(rows_with_any_key(km, seg, B, LQ),
                                      attention_mask(km, seg, B, LQ, LK)[:, 0].any(-1))


@pytest.mark.parametrize("case", MASK_CASES)
def test_splash_interpret_matches_xla(case):
    from mgen_jax.models.attention.splash import splash_attention
    _check_against_xla(lambda *a: splash_attention(*a, interpret=True), case)


def test_splash_interpret_several_blocks():
    from mgen_jax.models.attention.splash import splash_attention
    # 150 -> 256 (2 query blocks of 128), 140 -> 256 (2 key blocks).
    kernel = lambda *a: splash_attention(*a, block_q=128, block_kv=128, interpret=True)
    _check_against_xla(kernel, "both", lq=150, lk=140)


def test_splash_compiles_for_tpu_ahead_of_time(monkeypatch):
    # libtpu's compile-only client: no TPU hosts to find, and other processes on this machine
    # (parallel test runs) may hold libtpu's lockfile, which only matters for real chips.
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
    monkeypatch.setenv("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from mgen_jax.models.attention.splash import splash_attention

    topology = topologies.get_topology_desc(platform="tpu", topology_name="v5p:2x2x1")
    tpu = NamedSharding(Mesh(np.array(topology.devices[:1]).reshape(1), ("x",)), PartitionSpec())
    x = jax.ShapeDtypeStruct((2, 1000, 2, 128), jnp.bfloat16, sharding=tpu)
    ids = jax.ShapeDtypeStruct((2, 1000), jnp.int32, sharding=tpu)
    key_mask = jax.ShapeDtypeStruct((2, 1000), jnp.bool_, sharding=tpu)

    def loss(q, k, v, key_mask, q_seg, kv_seg):
        return splash_attention(q, k, v, key_mask, (q_seg, kv_seg)).astype(jnp.float32).sum()

    traced = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).trace(x, x, x, key_mask, ids, ids)
    lowered = traced.lower()
    assert lowered.as_text().count("tpu_custom_call") >= 2  # forward kernel + fused backward kernel
    compiled = lowered.compile()
    # Arguments: q, k, v (bf16) + key mask (bool) + two segment-id arrays (int32); outputs: the
    # float32 loss + the three bf16 gradients. TPU tiling pads a little, never by 1%.
    memory = compiled.memory_analysis()
    qkv_bytes = 2 * 1000 * 2 * 128 * 2
    arguments = 3 * qkv_bytes + 2 * 1000 * 1 + 2 * (2 * 1000 * 4)
    assert arguments <= memory.argument_size_in_bytes < 1.01 * arguments
    outputs = 4 + 3 * qkv_bytes
    assert outputs <= memory.output_size_in_bytes < 1.01 * outputs


# --- dispatcher ----------------------------------------------------------------------------------

def test_dispatcher_backends_and_auto():
    assert set(ATTENTION_BACKENDS) == {"xla", "chunked", "cudnn", "splash", "auto"}
    assert resolve_backend("auto") == "chunked"  # tests run on CPU
    assert resolve_backend("auto", "tpu") == "splash" and resolve_backend("auto", "gpu") == "cudnn"
    with pytest.raises(ValueError, match="unknown"):
        resolve_backend("flash9")
    q, k, v, _ = _inputs()
    key_mask, segment_ids = _masks("both")
    ref = xla_attention(q, k, v, key_mask, segment_ids)
    for backend in ("xla", "chunked", "auto"):
        fn = jax.jit(lambda *a: dot_product_attention(*a, backend=backend))
        _assert_close(fn(q, k, v, key_mask, segment_ids), ref)
