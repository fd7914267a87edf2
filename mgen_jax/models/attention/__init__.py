"""Attention kernels (one per file) behind one dispatcher, `dot_product_attention`.

Every kernel has the same contract:
    q [B, Lq, H, D], k/v [B, Lk, H, D]
    key_mask     [B, Lk] bool, True = attend (padding of text prompts), or None
    segment_ids  (q_segments [B, Lq], kv_segments [B, Lk]) int32, or None: a query attends only to
                 keys of its own segment (block-diagonal mask for packed sequences)
    -> [B, Lq, H, D] in q's dtype; softmax in float32; a query row with no key to attend to
       returns zeros.

Backends:
    "xla"      plain XLA, materialises [B, H, Lq, Lk] scores (reference; memory ~ Lq * Lk)
    "chunked"  pure-JAX flash-style blocks + online softmax + recomputing custom VJP; memory linear
               in length, forward and backward, on any platform
    "cudnn"    cuDNN fused flash attention (NVIDIA GPU only; computes in bf16/fp16)
    "splash"   Pallas splash attention (TPU only; a Pallas kernel, so under SPMD it must run per
               shard inside shard_map)
    "auto"     resolved by the default platform: tpu -> "splash", gpu (CUDA) -> "cudnn",
               anything else (cpu, ROCm) -> "chunked". Call `resolve_backend` to see the choice.

The backends are the registry configs/registries.py:ATTENTION_BACKENDS (adding a kernel is its
file plus one entry there); each kernel module is imported on first use, so the slow Pallas TPU
import happens only where splash runs.
"""
from mgen_jax.configs.registries import ATTENTION_BACKENDS

AUTO = "auto"


def resolve_backend(backend: str, platform: str | None = None) -> str:
    """The concrete backend name: `backend` itself, or the platform's choice for "auto".
    `platform` defaults to the default backend's; pass the mesh devices' platform when compiling
    ahead of time for another one (`mgen plan` compiles for TPU on a CPU host)."""
    if backend == AUTO:
        return ATTENTION_BACKENDS.load(AUTO)(platform)
    ATTENTION_BACKENDS.entry(backend)  # unknown names fail here, listing the known ones
    return backend


def runs_per_shard(backend: str) -> bool:
    """Whether the kernel must run per shard under shard_map on a mesh (registry meta)."""
    return bool(ATTENTION_BACKENDS.entry(backend).meta.get("per_shard"))


def dot_product_attention(q, k, v, key_mask=None, segment_ids=None, *, backend: str = "xla"):
    return ATTENTION_BACKENDS.load(resolve_backend(backend))(q, k, v, key_mask, segment_ids)
