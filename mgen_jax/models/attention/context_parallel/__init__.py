"""Context parallelism for self-attention: the sequence is sharded over the mesh axes that the
logical axis "act_seq" maps to ('context' in the presets), and attention still sees every key.

    "all_gather"  all-gather K/V over context, local kernel on local queries (Movie Gen)
    "ring"        K/V blocks circulate by ppermute, online-softmax merge (no full K/V in forward)
    "ulysses"     all-to-all sequence <-> heads, local kernel on full sequence, local heads

`context_parallel_attention` takes the global arrays inside a jitted function and runs the
strategy under `jax.shard_map` with in/out specs from the logical rules, so batch stays sharded
over the 'act_batch' axes and heads over 'act_heads' ('tensor'); with a context size of 1 (or
inside `unsharded()`) it is the local kernel itself.
"""
import math

import jax
from jax.sharding import PartitionSpec

from mgen_jax.configs.registries import CONTEXT_PARALLEL
from mgen_jax.models.attention import dot_product_attention
from mgen_jax.parallel.logical_rules import logical_to_spec, resolve_sharding

QKV_AXES = ("act_batch", "act_seq", "act_heads", "act_kv")
POSITION_AXES = ("act_batch", "act_seq")  # key mask, segment ids


def context_parallel_attention(q, k, v, key_mask=None, segment_ids=None, *, strategy: str,
                               backend: str = "xla", mesh=None, rules=None):
    """Self-attention with the sequence sharded over the context axes; the kernel contract of
    `mgen_jax.models.attention` (q/k/v [B, L, H, D], key_mask [B, Lk] bool, segment_ids
    (q_seg [B, Lq], kv_seg [B, Lk]) or None) on global arrays. mesh and rules: both given, or
    neither (then the enclosing `activation_sharding` context's; outside any it raises).
    `backend` picks the local kernel of "all_gather" and "ulysses"; "ring" computes its blocks
    itself."""
    body = CONTEXT_PARALLEL.load(strategy)  # unknown names fail here, listing the known ones
    active = resolve_sharding(mesh, rules)
    if active is None:  # unsharded()
        return dot_product_attention(q, k, v, key_mask, segment_ids, backend=backend)
    mesh, rules = active

    # The sequence's mesh axes regardless of divisibility: a length they do not divide is an
    # error here, not a silent replication.
    seq_axes = logical_to_spec(QKV_AXES, rules, mesh)[1]
    seq_axes = () if seq_axes is None else (seq_axes,) if isinstance(seq_axes, str) else seq_axes
    n = math.prod(mesh.shape[a] for a in seq_axes)
    if n == 1:
        return dot_product_attention(q, k, v, key_mask, segment_ids, backend=backend)
    for name, x in (("query", q), ("key", k)):
        if x.shape[1] % n:
            raise ValueError(f"context parallelism: {name} length {x.shape[1]} is not divisible "
                             f"by the context size {n} (mesh axes {seq_axes})")

    qkv_spec = logical_to_spec(QKV_AXES, rules, mesh, q.shape)
    if strategy == "ulysses":
        heads_axes = qkv_spec[2]
        heads_axes = (() if heads_axes is None else (heads_axes,) if isinstance(heads_axes, str)
                      else heads_axes)
        local_heads = q.shape[2] // math.prod(mesh.shape[a] for a in heads_axes)
        if local_heads % n:
            raise ValueError(f"ulysses: {q.shape[2]} heads ({local_heads} per device after "
                             f"sharding over {heads_axes}) not divisible by the context size {n}")

    pos_spec = PartitionSpec(qkv_spec[0], qkv_spec[1])
    args = {"q": q, "k": k, "v": v}
    specs = {"q": qkv_spec, "k": qkv_spec, "v": qkv_spec}
    if key_mask is not None:
        args["key_mask"], specs["key_mask"] = key_mask, pos_spec
    if segment_ids is not None:
        args["q_seg"], args["kv_seg"] = segment_ids
        specs["q_seg"] = specs["kv_seg"] = pos_spec

    axis_name = seq_axes[0] if len(seq_axes) == 1 else tuple(seq_axes)

    def per_shard(a):
        return body(a["q"], a["k"], a["v"], a.get("key_mask"), a.get("q_seg"), a.get("kv_seg"),
                    axis_name=axis_name, axis_size=n, backend=backend)

    # check_vma=False: the local kernels (chunked's scans with fresh zero carries, Pallas splash)
    # are not written for shard_map's varying-axes typing. The tests check the gradients.
    return jax.shard_map(per_shard, mesh=mesh, in_specs=(specs,), out_specs=qkv_spec,
                         check_vma=False)(args)
