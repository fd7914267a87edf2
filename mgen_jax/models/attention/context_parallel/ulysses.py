"""DeepSpeed-Ulysses context parallelism: an all-to-all turns the sequence-sharded, all-heads
q/k/v into full-sequence, heads-sharded ones; each device runs the local kernel on its heads over
the whole sequence; a second all-to-all restores the sequence sharding.

Communication per layer: all-to-alls of q, k, v and the output (each moves (n-1)/n of a local
[L/n, h, D] block) forward, the same backward; needs local heads divisible by the context size.
"""
import jax

from mgen_jax.models.attention import dot_product_attention


def ulysses_attention(q, k, v, key_mask=None, q_seg=None, kv_seg=None, *, axis_name,
                      axis_size: int, backend: str = "xla"):
    """Per-shard body (inside shard_map): q/k/v [b, L/n, h, D] -> [b, L/n, h, D]; h % n == 0."""
    if q.shape[2] % axis_size:
        raise ValueError(f"ulysses: {q.shape[2]} local heads not divisible by the context size "
                         f"{axis_size}")

    def seq_to_heads(x):  # [b, L/n, h, D] -> [b, L, h/n, D]; chunks arrive in device order
        return jax.lax.all_to_all(x, axis_name, split_axis=2, concat_axis=1, tiled=True)

    def heads_to_seq(x):  # [b, L, h/n, D] -> [b, L/n, h, D]
        return jax.lax.all_to_all(x, axis_name, split_axis=1, concat_axis=2, tiled=True)

    def gather(x):  # masks and segment ids are per position, not per head: gather them whole
        return jax.lax.all_gather(x, axis_name, axis=1, tiled=True)

    key_mask = None if key_mask is None else gather(key_mask)
    segment_ids = None if q_seg is None else (gather(q_seg), gather(kv_seg))
    out = dot_product_attention(seq_to_heads(q), seq_to_heads(k), seq_to_heads(v), key_mask,
                                segment_ids, backend=backend)
    return heads_to_seq(out)
