"""Memory-efficient ("flash-style") attention in pure JAX: blocks of queries and keys, online softmax.

Forward: for every query block (`lax.map`) scan over key blocks keeping a running max `m`, running
sum `l` and un-normalised output in float32; the [Lq, Lk] score matrix never exists, only one
[B, H, block_q, block_kv] tile at a time.

Backward (`jax.custom_vjp`, FlashAttention-2 style): the residuals are only q, k, v, the masks, the
output and the per-row logsumexp (all linear in length). The gradient re-computes each score tile
from them: P = exp(S - lse), dV += P^T dO, dS = P * (dO V^T - rowsum(dO * O)), dQ += dS K,
dK += dS^T Q. One pass: outer scan over key blocks (dK, dV of that block as scan outputs), inner
scan over query blocks carrying the full dQ accumulator. So peak memory of forward and of
forward+backward both grow linearly with sequence length.

Any length works: sequences are padded to a multiple of the block size; padded keys are masked out
and padded query rows are sliced off. Rows with no key to attend to give zeros (and lse = -inf).
"""
import functools

import jax
import jax.numpy as jnp
from jax import lax

DEFAULT_BLOCK = 512
F32 = jnp.float32


def _pad_axis1(x, length: int, value=0):
    if x is None or x.shape[1] == length:
        return x
    pad = [(0, 0)] * x.ndim
    pad[1] = (0, length - x.shape[1])
    return jnp.pad(x, pad, constant_values=value)


def _block(x, i, size: int, axis: int):
    return lax.dynamic_slice_in_dim(x, i * size, size, axis=axis)


def _tile_mask(kv_valid, q_seg, kv_seg, i, j, bq: int, bk: int):
    """[B, 1, bq, bk] bool (True = attend) for query block i and key block j, or None."""
    mask = None
    if kv_valid is not None:
        mask = _block(kv_valid, j, bk, 1)[:, None, None, :]
    if q_seg is not None:
        same = _block(q_seg, i, bq, 1)[:, None, :, None] == _block(kv_seg, j, bk, 1)[:, None, None, :]
        mask = same if mask is None else mask & same
    return mask


def _scores(qi, kj, mask, scale):
    s = jnp.einsum("bqhd,bkhd->bhqk", qi, kj, preferred_element_type=F32) * scale
    return s if mask is None else jnp.where(mask, s, -jnp.inf)


def _forward(q, k, v, kv_valid, q_seg, kv_seg, bq: int, bk: int):
    """Padded inputs -> (out [B, Lq, H, D] q.dtype, lse [B, H, Lq] float32, -inf on empty rows)."""
    b, lq, h, d = q.shape
    nq, nk = lq // bq, k.shape[1] // bk
    scale = d ** -0.5

    def q_block(i):
        qi = _block(q, i, bq, 1)

        def kv_step(carry, j):
            m, l, acc = carry
            s = _scores(qi, _block(k, j, bk, 1), _tile_mask(kv_valid, q_seg, kv_seg, i, j, bq, bk), scale)
            m_new = jnp.maximum(m, s.max(-1))
            # While a row has seen only masked keys its max is -inf; shift by 0 so exp gives 0, not NaN.
            m_safe = jnp.where(jnp.isneginf(m_new), 0.0, m_new)
            p = jnp.exp(s - m_safe[..., None])
            alpha = jnp.exp(m - m_safe)
            l = alpha * l + p.sum(-1)
            pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v.dtype), _block(v, j, bk, 1),
                            preferred_element_type=F32)
            return (m_new, l, alpha[..., None] * acc + pv), None

        init = (jnp.full((b, h, bq), -jnp.inf, F32), jnp.zeros((b, h, bq), F32),
                jnp.zeros((b, h, bq, d), F32))
        (m, l, acc), _ = lax.scan(kv_step, init, jnp.arange(nk))
        nonempty = l > 0
        out = jnp.where(nonempty[..., None], acc / jnp.where(nonempty, l, 1.0)[..., None], 0.0)
        lse = jnp.where(nonempty, m + jnp.log(jnp.where(nonempty, l, 1.0)), -jnp.inf)
        return out.astype(q.dtype), lse

    out, lse = lax.map(q_block, jnp.arange(nq))  # [nq, B, H, bq, D], [nq, B, H, bq]
    out = out.transpose(1, 0, 3, 2, 4).reshape(b, lq, h, d)
    lse = lse.transpose(1, 2, 0, 3).reshape(b, h, lq)
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7))
def _flash(q, k, v, kv_valid, q_seg, kv_seg, bq, bk):
    return _forward(q, k, v, kv_valid, q_seg, kv_seg, bq, bk)


def _flash_fwd(q, k, v, kv_valid, q_seg, kv_seg, bq, bk):
    out, lse = _forward(q, k, v, kv_valid, q_seg, kv_seg, bq, bk)
    return (out, lse), (q, k, v, kv_valid, q_seg, kv_seg, out, lse)


def _flash_bwd(bq, bk, res, cotangents):
    q, k, v, kv_valid, q_seg, kv_seg, out, lse = res
    d_out, d_lse = cotangents
    b, lq, h, d = q.shape
    nq, nk = lq // bq, k.shape[1] // bk
    scale = d ** -0.5
    # dS = P * (dP - delta) with delta = rowsum(dO * O); a cotangent on lse adds P * d_lse
    # (d lse / d S = P), i.e. it just shifts delta.
    delta = jnp.einsum("bqhd,bqhd->bhq", d_out, out, preferred_element_type=F32) - d_lse.astype(F32)
    lse_safe = jnp.where(jnp.isneginf(lse), 0.0, lse)  # empty rows: every tile entry is -inf -> P = 0

    def kv_block(dq_acc, j):
        kj, vj = _block(k, j, bk, 1), _block(v, j, bk, 1)

        def q_step(carry, i):
            dq_acc, dk, dv = carry
            qi, do_i = _block(q, i, bq, 1), _block(d_out, i, bq, 1)
            s = _scores(qi, kj, _tile_mask(kv_valid, q_seg, kv_seg, i, j, bq, bk), scale)
            p = jnp.exp(s - _block(lse_safe, i, bq, 2)[..., None])
            dv = dv + jnp.einsum("bhqk,bqhd->bkhd", p.astype(do_i.dtype), do_i,
                                 preferred_element_type=F32)
            dp = jnp.einsum("bqhd,bkhd->bhqk", do_i, vj, preferred_element_type=F32)
            ds = p * (dp - _block(delta, i, bq, 2)[..., None]) * scale
            dk = dk + jnp.einsum("bhqk,bqhd->bkhd", ds.astype(qi.dtype), qi, preferred_element_type=F32)
            dq_i = jnp.einsum("bhqk,bkhd->bqhd", ds.astype(kj.dtype), kj, preferred_element_type=F32)
            dq_acc = lax.dynamic_update_slice_in_dim(
                dq_acc, _block(dq_acc, i, bq, 1) + dq_i, i * bq, axis=1)
            return (dq_acc, dk, dv), None

        zeros_kv = jnp.zeros((b, bk, h, d), F32)
        (dq_acc, dk, dv), _ = lax.scan(q_step, (dq_acc, zeros_kv, zeros_kv), jnp.arange(nq))
        return dq_acc, (dk, dv)

    dq, (dk, dv) = lax.scan(kv_block, jnp.zeros(q.shape, F32), jnp.arange(nk))
    # [nk, B, bk, H, D] -> [B, Lk, H, D]
    dk = dk.transpose(1, 0, 2, 3, 4).reshape(k.shape)
    dv = dv.transpose(1, 0, 2, 3, 4).reshape(v.shape)
    # Masks and segment ids are bool / int: no cotangent.
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None, None, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def chunked_attention_with_lse(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None,
                               segment_ids=None, *, block_q: int = DEFAULT_BLOCK,
                               block_kv: int = DEFAULT_BLOCK) -> tuple[jax.Array, jax.Array]:
    """Attention (module contract) that also returns the logsumexp of each query row's scores.

    Returns (out [B, Lq, H, D] in q's dtype, lse [B, H, Lq] float32); lse is -inf for rows with no
    key to attend to. Both outputs are differentiable (lse too, e.g. for merging ring-attention
    partial results)."""
    b, lq, h, _ = q.shape
    lk = k.shape[1]
    bq, bk = min(block_q, lq), min(block_kv, lk)
    lq_pad, lk_pad = -(-lq // bq) * bq, -(-lk // bk) * bk

    kv_valid = key_mask
    if kv_valid is None and lk_pad != lk:
        kv_valid = jnp.ones((b, lk), bool)
    kv_valid = _pad_axis1(kv_valid, lk_pad, False)  # padded keys are never attended
    q_seg = kv_seg = None
    if segment_ids is not None:
        # Padded queries are sliced off and padded keys masked above, so their ids do not matter.
        q_seg = _pad_axis1(jnp.asarray(segment_ids[0], jnp.int32), lq_pad)
        kv_seg = _pad_axis1(jnp.asarray(segment_ids[1], jnp.int32), lk_pad)

    out, lse = _flash(_pad_axis1(q, lq_pad), _pad_axis1(k, lk_pad), _pad_axis1(v, lk_pad),
                      kv_valid, q_seg, kv_seg, bq, bk)
    return out[:, :lq], lse[:, :, :lq]


def chunked_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None,
                      segment_ids=None, *, block_q: int = DEFAULT_BLOCK,
                      block_kv: int = DEFAULT_BLOCK) -> jax.Array:
    """Attention (module contract) with memory linear in sequence length, forward and backward."""
    return chunked_attention_with_lse(q, k, v, key_mask, segment_ids,
                                      block_q=block_q, block_kv=block_kv)[0]
