"""Ring attention: each device keeps its query block while the K/V blocks (with their key mask /
segment ids) travel round the context ring by `ppermute`; at each of the n steps the local
queries attend to the visiting block and the partial results are merged by online softmax
(running max m, running sum l, unnormalised output o, all float32).

Communication per layer: n-1 neighbour sends of the local K/V block forward (each overlappable
with the block's compute); autodiff transposes them into the reverse ring for dK/dV. Forward
memory: one visiting K/V block and one block's [L/n x L/n] scores; for the backward the loop keeps
every visited K/V block (O(L) per device, as all-gather) but recomputes the scores.

With backend="chunked" each visiting block is attended by the flash-style kernel
(`chunked_attention_with_lse`) and the partial results are merged by their logsumexp, so not even
one [L/n x L/n] score block exists: what long sequences need. Other backends use the einsum blocks.
"""
import jax
import jax.numpy as jnp


def _block_stats(q, k, v, key_mask, q_seg, kv_seg):
    """Attention of local queries to one K/V block, as online-softmax statistics:
    m [b, q, h] row max (stop-gradient, -inf where the row has no key here), l [b, q, h] sum of
    exp(s - m), o [b, q, h, D] float32 sum of exp(s - m) * v. m + log(l) is the block's lse."""
    scale = q.shape[-1] ** -0.5
    s = jnp.einsum("bqhd,bkhd->bqhk", q, k, preferred_element_type=jnp.float32) * scale
    mask = None
    if key_mask is not None:
        mask = key_mask[:, None, None, :]
    if q_seg is not None:
        same = q_seg[:, :, None, None] == kv_seg[:, None, None, :]
        mask = same if mask is None else mask & same
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    # The result does not depend on the shift m: treat it as a constant (no backward of the max).
    m = jax.lax.stop_gradient(s.max(axis=-1))
    p = jnp.exp(s - _finite(m)[..., None])  # masked keys: exp(-inf) = 0
    o = jnp.einsum("bqhk,bkhd->bqhd", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return m, p.sum(axis=-1), o


def _finite(m):
    """The shift to subtract: m itself, or 0 for rows with nothing to attend to (m = -inf)."""
    return jnp.where(jnp.isfinite(m), m, 0.0)


def _merge(a, b):
    """Combine the statistics of two disjoint key sets."""
    (m_a, l_a, o_a), (m_b, l_b, o_b) = a, b
    m = jnp.maximum(m_a, m_b)
    c_a, c_b = jnp.exp(m_a - _finite(m)), jnp.exp(m_b - _finite(m))  # 0 for an empty side
    return m, l_a * c_a + l_b * c_b, o_a * c_a[..., None] + o_b * c_b[..., None]


def ring_attention(q, k, v, key_mask=None, q_seg=None, kv_seg=None, *, axis_name,
                   axis_size: int, backend: str = "xla"):
    """Per-shard body (inside shard_map): q/k/v [b, L/n, h, D] -> [b, L/n, h, D].

    backend "chunked" runs each block with the flash-style kernel; any other backend uses the
    einsum blocks here (the ring needs each block's softmax statistics, which only these give)."""
    if backend == "chunked":
        block, merge, normalise = _chunked_block(q, q_seg), _merge_lse, _normalise_lse
    else:
        # Recompute a block's scores in the backward instead of saving n of them.
        block = jax.checkpoint(lambda kv: _block_stats(q, *kv[:3], q_seg, kv[3]))
        merge, normalise = _merge, _normalise
    perm = [(i, (i + 1) % axis_size) for i in range(axis_size)]

    def send(kv):  # pass the visiting block to the next device; None entries stay None
        return jax.lax.ppermute(kv, axis_name, perm)

    # The send of the next block is issued before the current block's compute and does not
    # depend on it, so the two can overlap; n blocks take n-1 sends.
    kv = (k, v, key_mask, kv_seg)
    if axis_size == 1:
        return normalise(block(kv), q.dtype)
    stats, kv_next = block(kv), send(kv)

    def step(_, carry):
        stats, kv = carry
        return merge(stats, block(kv)), send(kv)

    stats, kv_last = jax.lax.fori_loop(0, axis_size - 2, step, (stats, kv_next))
    return normalise(merge(stats, block(kv_last)), q.dtype)


def _normalise(stats, dtype):
    _, l, o = stats
    return (o / jnp.where(l > 0, l, 1.0)[..., None]).astype(dtype)  # l = 0 (no key): zeros


def _chunked_block(q, q_seg):
    """Block attention by the flash-style kernel: (out [b, q, h, D] float32, lse [b, h, q])."""
    from mgen_jax.models.attention.chunked import chunked_attention_with_lse

    def block(kv):
        k, v, key_mask, kv_seg = kv
        segments = None if q_seg is None else (q_seg, kv_seg)
        out, lse = chunked_attention_with_lse(q, k, v, key_mask, segments)
        return out.astype(jnp.float32), lse
    return block


def _merge_lse(a, b):
    """Combine two normalised partial outputs by their logsumexps (-inf = no key on that side)."""
    (o_a, lse_a), (o_b, lse_b) = a, b
    m = _finite(jnp.maximum(lse_a, lse_b))
    w_a, w_b = jnp.exp(lse_a - m), jnp.exp(lse_b - m)          # [b, h, q]; 0 for an empty side
    total = w_a + w_b
    safe = jnp.where(total > 0, total, 1.0)
    weight = lambda w: jnp.swapaxes(w / safe, 1, 2)[..., None]  # -> [b, q, h, 1]
    lse = jnp.where(total > 0, m + jnp.log(safe), -jnp.inf)
    return o_a * weight(w_a) + o_b * weight(w_b), lse


def _normalise_lse(stats, dtype):
    return stats[0].astype(dtype)  # already normalised; rows with no key are zeros
