"""Pallas splash attention (TPU flash attention kernel from jax.experimental.pallas.ops.tpu).

Layout: the kernel works on one example, q [H, Lq, D], k/v [H, Lk, D]; we transpose [B, L, H, D]
to [B, H, L, D] and vmap the kernel over the batch. The kernel does not scale its logits, so q is
multiplied by 1/sqrt(D) first (in q's dtype; the xla kernel scales the float32 scores instead, an
ulp-level difference for bf16).

Masks: the static kernel mask is a full (non-causal) `MultiHeadMask` of `FullMask`s; everything
data-dependent goes through the kernel's `SegmentIds` (a query attends a key iff their ids are
equal):
  * sequences are padded to a multiple of 128 (the kernel's lane width; block sizes must divide
    the padded length), padded keys get a "dead" id that no query has, padded query rows are
    sliced off;
  * key_mask is folded into the kv ids the same way (masked keys get the dead id);
  * segment_ids are used as they are (dead id = per-example min of the query ids - 1, so ids
    must be > int32 min).
The kernel's masking uses a large finite negative value, so a query with no key to attend to
gets a uniform average instead of zeros; such rows are found in O(L log L) (sorted kv ids +
searchsorted, no [Lq, Lk] tensor) and zeroed here. Their output cotangent is then zero, so they
add nothing to any gradient.

16-bit inputs are traced at default matmul precision whatever the global setting (Mosaic
cannot lower bf16 matmuls at "highest"), forward and backward.

`interpret=True` runs the Pallas kernels in the Pallas interpreter (any platform, e.g. CPU
tests); otherwise the kernel only lowers for TPU (ahead-of-time compilation for a TPU topology
from a CPU host works, see the tests).
"""
import contextlib

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash_kernel
from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as splash_mask

LANES = 128  # kernel block sizes (and so the padded lengths) must be multiples of this
# The kernel names its residuals (output and log-sum-exp) with this checkpoint name, so a remat
# policy can keep them and the backward pass need not re-run the flash forward
# (models/dit/remat.py: save_splash_residuals).
RESIDUALS = "splash_residuals"
DEFAULT_BLOCK = 512


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def block_size_for(padded_len: int, block: int) -> int:
    """Largest multiple of 128 that is <= block and divides padded_len (a multiple of 128)."""
    for size in range(_round_up(min(block, padded_len), LANES), 0, -LANES):
        if padded_len % size == 0:
            return size
    raise ValueError(f"padded length {padded_len} is not a multiple of {LANES}")


def kernel_segment_ids(key_mask, segment_ids, batch: int, lq: int, lk: int, lq_pad: int,
                       lk_pad: int):
    """(q_ids [B, lq_pad], kv_ids [B, lk_pad]) int32 for the kernel, or None if nothing is masked.

    A query may attend a key iff the ids are equal; masked and padded keys get a dead id."""
    if key_mask is None and segment_ids is None and lq == lq_pad and lk == lk_pad:
        return None
    if segment_ids is None:
        q_ids, kv_ids = jnp.zeros((batch, lq), jnp.int32), jnp.zeros((batch, lk), jnp.int32)
    else:
        q_ids, kv_ids = (jnp.asarray(s, jnp.int32) for s in segment_ids)
    # Padded query rows are sliced off, so any id will do.
    q_ids = jnp.pad(q_ids, ((0, 0), (0, lq_pad - lq)))
    dead = q_ids.min(axis=1, keepdims=True) - 1
    if key_mask is not None:
        kv_ids = jnp.where(key_mask, kv_ids, dead)
    kv_ids = jnp.concatenate([kv_ids, jnp.broadcast_to(dead, (batch, lk_pad - lk))], axis=1)
    return q_ids, kv_ids


def rows_with_any_key(key_mask, segment_ids, batch: int, lq: int):
    """[B, Lq] bool: the query row has at least one key to attend to; None if all rows do."""
    if segment_ids is None:
        if key_mask is None:
            return None
        return jnp.broadcast_to(key_mask.any(-1)[:, None], (batch, lq))
    q_ids, kv_ids = (jnp.asarray(s, jnp.int32) for s in segment_ids)
    if key_mask is not None:
        kv_ids = jnp.where(key_mask, kv_ids, q_ids.min(axis=1, keepdims=True) - 1)
    kv_sorted = jnp.sort(kv_ids, axis=1)
    pos = jax.vmap(jnp.searchsorted)(kv_sorted, q_ids)  # first sorted kv id >= the query's id
    pos = jnp.minimum(pos, kv_sorted.shape[1] - 1)
    return jnp.take_along_axis(kv_sorted, pos, axis=1) == q_ids


def _make_kernel(heads: int, lq_pad: int, lk_pad: int, bq: int, bk: int, interpret: bool):
    mask = splash_mask.MultiHeadMask(tuple(splash_mask.FullMask((lq_pad, lk_pad)) for _ in range(heads)))
    blocks = splash_kernel.BlockSizes(
        block_q=bq, block_kv=bk, block_kv_compute=bk,
        block_q_dkv=bq, block_kv_dkv=bk, block_kv_dkv_compute=bk,
        use_fused_bwd_kernel=True)  # one backward kernel computing dq, dk and dv together
    # Built per call, not cached: the kernel holds its block tables as jnp arrays, which are
    # tracers of the surrounding jit. (The block tables themselves are cached by the library.)
    return splash_kernel.make_splash_mha(mask, block_sizes=blocks, head_shards=1, q_seq_shards=1,
                                         residual_checkpoint_name=RESIDUALS, interpret=interpret)


def _batched(kernel, ids, q, k, v):
    return jax.vmap(kernel)(q, k, v) if ids is None else jax.vmap(kernel)(q, k, v, ids)


def _kernel_precision(dtype):
    """Mosaic rejects bf16/fp16 matmuls at fp32 contract precision, which a global
    `jax_default_matmul_precision="highest"` would request: trace 16-bit kernels at default
    precision. float32 kernels keep the configured precision (Mosaic supports it)."""
    if jnp.dtype(dtype).itemsize < 4:
        return jax.default_matmul_precision("default")
    return contextlib.nullcontext()


# A `with` block around the call alone is not enough: the kernel's own backward is traced later,
# by the transpose. This custom_vjp keeps the kernel's VJP function as its residual and re-enters
# the precision context around the backward too.
@jax.custom_vjp
def _run_kernel(kernel, ids, q, k, v):
    with _kernel_precision(q.dtype):
        return _batched(kernel, ids, q, k, v)


def _run_kernel_fwd(kernel, ids, q, k, v):
    with _kernel_precision(q.dtype):
        out, kernel_vjp = jax.vjp(lambda q, k, v: _batched(kernel, ids, q, k, v), q, k, v)
    return out, kernel_vjp


def _run_kernel_bwd(kernel_vjp, d_out):
    with _kernel_precision(d_out.dtype):
        return (None, None, *kernel_vjp(d_out))  # kernel block tables and segment ids: integers


_run_kernel.defvjp(_run_kernel_fwd, _run_kernel_bwd)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None,
                     segment_ids=None, *, block_q: int = DEFAULT_BLOCK, block_kv: int = DEFAULT_BLOCK,
                     interpret: bool = False) -> jax.Array:
    """Attention (module contract) with the TPU splash kernel; see the module docstring."""
    b, lq, h, d = q.shape
    lk = k.shape[1]
    lq_pad, lk_pad = _round_up(lq, LANES), _round_up(lk, LANES)
    kernel = _make_kernel(h, lq_pad, lk_pad, block_size_for(lq_pad, block_q),
                          block_size_for(lk_pad, block_kv), interpret)

    def to_kernel_layout(x, length):  # [B, L, H, D] -> [B, H, L_pad, D]
        return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0))).transpose(0, 2, 1, 3)

    qh = to_kernel_layout(q * jnp.asarray(d ** -0.5, q.dtype), lq_pad)
    kh, vh = to_kernel_layout(k, lk_pad), to_kernel_layout(v, lk_pad)
    ids = kernel_segment_ids(key_mask, segment_ids, b, lq, lk, lq_pad, lk_pad)
    ids = None if ids is None else splash_kernel.SegmentIds(*ids)
    out = _run_kernel(kernel, ids, qh, kh, vh)
    out = out.transpose(0, 2, 1, 3)[:, :lq]
    has_key = rows_with_any_key(key_mask, segment_ids, b, lq)
    if has_key is not None:
        out = jnp.where(has_key[:, :, None, None], out, jnp.zeros((), out.dtype))
    return out.astype(q.dtype)

