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

"cudnn" and "splash" are imported on first use: the Pallas TPU import is slow and neither is
usable off its platform.
"""
from mgen_jax.models.attention.chunked import chunked_attention
from mgen_jax.models.attention.xla import xla_attention


def _cudnn(q, k, v, key_mask=None, segment_ids=None):
    from mgen_jax.models.attention.cudnn import cudnn_attention
    return cudnn_attention(q, k, v, key_mask, segment_ids)


def _splash(q, k, v, key_mask=None, segment_ids=None):
    from mgen_jax.models.attention.splash import splash_attention
    return splash_attention(q, k, v, key_mask, segment_ids)


BACKENDS = {"xla": xla_attention, "chunked": chunked_attention, "cudnn": _cudnn, "splash": _splash}
AUTO = "auto"


def resolve_backend(backend: str, platform: str | None = None) -> str:
    """The concrete backend name: `backend` itself, or the platform's choice for "auto".
    `platform` defaults to the default backend's; pass the mesh devices' platform when compiling
    ahead of time for another one (`mgen plan` compiles for TPU on a CPU host)."""
    if backend == AUTO:
        import jax
        import jax.extend  # not loaded by `import jax`; needed for platform_version

        if platform is None:
            platform = jax.default_backend()
            if platform == "gpu" and "cuda" not in jax.extend.backend.get_backend().platform_version.lower():
                platform = "rocm"
        return {"tpu": "splash", "gpu": "cudnn", "cuda": "cudnn"}.get(platform, "chunked")
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r} unknown; choose one of "
                         f"{sorted(BACKENDS) + [AUTO]}")
    return backend


def dot_product_attention(q, k, v, key_mask=None, segment_ids=None, *, backend: str = "xla"):
    return BACKENDS[resolve_backend(backend)](q, k, v, key_mask, segment_ids)
