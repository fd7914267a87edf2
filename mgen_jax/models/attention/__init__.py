"""Attention kernels (one per file) behind one dispatcher, `dot_product_attention`."""
from mgen_jax.models.attention.xla import xla_attention

BACKENDS = {"xla": xla_attention}


def dot_product_attention(q, k, v, key_mask=None, *, backend: str = "xla"):
    """q [B, Lq, H, D], k/v [B, Lk, H, D], optional key_mask [B, Lk] -> [B, Lq, H, D]."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} unknown; choose one of {sorted(BACKENDS)}")
    return BACKENDS[backend](q, k, v, key_mask)
