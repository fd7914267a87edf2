"""All-gather context parallelism (Movie Gen's choice): each device keeps its query block and
all-gathers K, V (and the key-side mask / segment ids) over the context axis, then runs the
local attention kernel on [L/n queries x L keys].

Communication per layer: one all-gather of K and V ((n-1)/n of their global size per device)
forward, and its transpose, a reduce-scatter of dK/dV, backward. Memory: the full K/V per device.
"""
import jax

from mgen_jax.models.attention import dot_product_attention


def all_gather_attention(q, k, v, key_mask=None, q_seg=None, kv_seg=None, *, axis_name,
                         axis_size: int, backend: str = "xla"):
    """Per-shard body (inside shard_map): q/k/v [b, L/n, h, D] -> [b, L/n, h, D]."""
    del axis_size  # the all-gather needs only the axis name

    def gather(x):  # sequence is axis 1 of every key-side array
        return jax.lax.all_gather(x, axis_name, axis=1, tiled=True)

    k, v = gather(k), gather(v)
    key_mask = None if key_mask is None else gather(key_mask)
    segment_ids = None if q_seg is None else (q_seg, gather(kv_seg))
    return dot_product_attention(q, k, v, key_mask, segment_ids, backend=backend)
