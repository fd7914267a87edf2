"""Attention kernels (one per file) behind one dispatcher, `dot_product_attention`.

Every kernel has the same contract:
    q [B, Lq, H, D], k/v [B, Lk, H, D]
    key_mask     [B, Lk] bool, True = attend (padding of text prompts), or None
    segment_ids  (q_segments [B, Lq], kv_segments [B, Lk]) int32, or None: a query attends only to
                 keys of its own segment (block-diagonal mask for packed sequences)
    -> [B, Lq, H, D] in q's dtype; softmax in float32; a query row with no key to attend to
       returns zeros.
"""
from mgen_jax.models.attention.xla import xla_attention

BACKENDS = {"xla": xla_attention}


def dot_product_attention(q, k, v, key_mask=None, segment_ids=None, *, backend: str = "xla"):
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} unknown; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](q, k, v, key_mask, segment_ids)
