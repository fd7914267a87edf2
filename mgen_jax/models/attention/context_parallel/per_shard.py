"""Attention run shard by shard with no communication: queries keep their sharding (batch over
'act_batch', sequence over 'act_seq', heads over 'act_heads'), keys/values are whole along the
sequence on every device (cross-attention to text; or self-attention with no context axis) and
sharded like the queries over batch and heads.

Why a shard_map for something that needs no collective: a Pallas kernel (splash) is opaque to the
SPMD partitioner, and the chunked kernel's scans dynamic-slice the query sequence, which SPMD
answers with an all-gather of the sharded sequence at every loop iteration. Per shard, both are
just the local kernel.
"""
import jax
from jax.sharding import PartitionSpec

from mgen_jax.models.attention import dot_product_attention
from mgen_jax.parallel.logical_rules import logical_to_spec

QKV_AXES = ("act_batch", "act_seq", "act_heads", "act_kv")


def per_shard_attention(q, k, v, key_mask=None, segment_ids=None, *, backend: str, mesh, rules):
    """The kernel contract of `mgen_jax.models.attention` on global arrays under `mesh`."""
    q_spec = logical_to_spec(QKV_AXES, rules, mesh, q.shape)
    kv_spec = PartitionSpec(q_spec[0], None, q_spec[2], q_spec[3])
    args = {"q": q, "k": k, "v": v}
    specs = {"q": q_spec, "k": kv_spec, "v": kv_spec}
    if key_mask is not None:
        args["key_mask"], specs["key_mask"] = key_mask, PartitionSpec(q_spec[0], None)
    if segment_ids is not None:
        args["q_seg"], args["kv_seg"] = segment_ids
        specs["q_seg"], specs["kv_seg"] = PartitionSpec(q_spec[0], q_spec[1]), PartitionSpec(q_spec[0], None)

    def local(a):
        seg = None if "q_seg" not in a else (a["q_seg"], a["kv_seg"])
        return dot_product_attention(a["q"], a["k"], a["v"], a.get("key_mask"), seg, backend=backend)

    # check_vma=False as in context_parallel_attention: the local kernels are not vma-typed.
    return jax.shard_map(local, mesh=mesh, in_specs=(specs,), out_specs=q_spec, check_vma=False)(args)
