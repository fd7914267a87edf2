"""Plain XLA attention: materialises the [B, H, Lq, Lk] score matrix; softmax in float32."""
import jax
import jax.numpy as jnp


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None
                  ) -> jax.Array:
    """q [B, Lq, H, D], k/v [B, Lk, H, D], key_mask [B, Lk] (True = attend) -> [B, Lq, H, D]."""
    scale = q.shape[-1] ** -0.5
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if key_mask is not None:
        scores = jnp.where(key_mask[:, None, None, :], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
