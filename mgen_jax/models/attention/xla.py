"""Plain XLA attention: materialises the [B, H, Lq, Lk] score matrix; softmax in float32.

Memory grows with Lq * Lk: the reference the other kernels are tested against."""
import jax
import jax.numpy as jnp


def attention_mask(key_mask, segment_ids, batch: int, lq: int, lk: int):
    """[B, 1, Lq, Lk] bool (True = attend) from a key mask and/or segment ids, or None."""
    mask = None
    if key_mask is not None:
        mask = jnp.broadcast_to(key_mask[:, None, None, :], (batch, 1, lq, lk))
    if segment_ids is not None:
        q_seg, kv_seg = segment_ids
        same = q_seg[:, None, :, None] == kv_seg[:, None, None, :]
        mask = same if mask is None else mask & same
    return mask


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None,
                  segment_ids=None) -> jax.Array:
    scale = q.shape[-1] ** -0.5
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    mask = attention_mask(key_mask, segment_ids, q.shape[0], q.shape[1], k.shape[1])
    if mask is not None:
        scores = jnp.where(mask, scores, -jnp.inf)
        # Rows with nothing to attend to: softmax of all -inf is NaN; make them zeros instead.
        probs = jax.nn.softmax(jnp.where(mask.any(-1, keepdims=True), scores, 0.0), axis=-1)
        probs = jnp.where(mask, probs, 0.0)
    else:
        probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v).astype(q.dtype)
