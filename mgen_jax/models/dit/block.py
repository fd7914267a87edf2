"""One Movie Gen transformer block (LLaMa-3 style, with the paper's three changes):

    x = x + pos                                   (positions added at every layer)
    x = x + g1 * SelfAttn(RMSNorm(x) * (1 + s1) + b1)     bidirectional, adaLN-modulated
    x = x + CrossAttn(RMSNorm(x), text)                     between self-attention and FFN
    x = x + g2 * SwiGLU(RMSNorm(x) * (1 + s2) + b2)

(b, s, g) come from the shared timestep modulation plus this layer's learned table. A packed
sequence holds several clips (segments), each with its own timestep and prompt: modulation is
then per segment and gathered per token, and attention is block-diagonal over segments.

`cfg.block_style` picks the two arms of the paper's Llama-vs-DiT ablation (Table 9), which share
adaLN, cross-attention and bidirectional attention and differ only in norm, FFN and biases:
    "llama" (default)  RMSNorm, SwiGLU FFN, no biases             (Movie Gen Video)
    "dit"              LayerNorm, GELU MLP, biases on every Linear (Movie Gen Audio, spec 6.4)
"""
import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from mgen_jax.configs.dit import BLOCK_STYLES
from mgen_jax.models.attention import dot_product_attention, resolve_backend, runs_per_shard
from mgen_jax.models.dit.remat import ATTENTION_OUT
from mgen_jax.models.layers import Dense, LayerNorm, RMSNorm, param
from mgen_jax.models.attention.context_parallel import context_parallel_attention
from mgen_jax.models.attention.context_parallel.per_shard import per_shard_attention
from mgen_jax.parallel.logical_rules import active_sharding, constrain

NUM_MODULATIONS = 6
RESIDUAL = ("act_batch", "act_res_seq", "act_embed")


# The activation sharding comes from the caller's `activation_sharding(mesh, rules)` or
# `unsharded()` context (parallel/logical_rules.py); outside both these functions raise.
def mesh_backend(backend: str) -> str:
    """Resolve "auto" for the platform of the mesh being compiled for (or the default one)."""
    active = active_sharding()
    return resolve_backend(backend, active[0].devices.flat[0].platform if active else None)


def attention(q, k, v, key_mask, segment_ids, *, backend: str, context_parallel: str | None):
    """Self-attention (context_parallel = strategy name: the sequence of q and k/v may be sharded
    over 'context') or cross-attention (None: k/v are text, whole on every device)."""
    active, backend = active_sharding(), mesh_backend(backend)
    if active is None:
        return dot_product_attention(q, k, v, key_mask, segment_ids, backend=backend)
    mesh, rules = active
    if context_parallel is not None and mesh.shape["context"] > 1:
        return context_parallel_attention(q, k, v, key_mask, segment_ids,
                                          strategy=context_parallel, backend=backend, mesh=mesh,
                                          rules=rules)
    if runs_per_shard(backend):  # models/attention/context_parallel/per_shard.py
        return per_shard_attention(q, k, v, key_mask, segment_ids, backend=backend, mesh=mesh,
                                   rules=rules)
    return dot_product_attention(q, k, v, key_mask, segment_ids, backend=backend)


class MultiHeadAttention(nnx.Module):
    def __init__(self, width: int, num_heads: int, *, kv_width: int | None = None,
                 use_bias: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
        kv_width = kv_width or width
        kw = dict(use_bias=use_bias, dtype=dtype, rngs=rngs)
        self.q = Dense(width, width, axes=("embed", "heads"), **kw)
        self.k = Dense(kv_width, width, axes=("embed", "heads"), **kw)
        self.v = Dense(kv_width, width, axes=("embed", "heads"), **kw)
        self.o = Dense(width, width, axes=("heads", "embed"), **kw)
        self.num_heads = num_heads

    def heads(self, t: jax.Array, sequence: str = "act_seq") -> jax.Array:
        """[B, N, W] -> [B, N, heads, head_dim]; cross-attention keys and values pass
        sequence='act_text' (the text stays whole on every context shard)."""
        b, n, _ = t.shape
        return constrain(t.reshape(b, n, self.num_heads, -1),
                         ("act_batch", sequence, "act_heads", "act_kv"))

    def output(self, out: jax.Array) -> jax.Array:
        b, n = out.shape[:2]
        out = checkpoint_name(out, ATTENTION_OUT)
        return self.o(out.reshape(b, n, -1))


class SwiGLU(nnx.Module):
    def __init__(self, width: int, hidden: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.gate = Dense(width, hidden, axes=("embed", "mlp"), use_bias=False, dtype=dtype, rngs=rngs)
        self.up = Dense(width, hidden, axes=("embed", "mlp"), use_bias=False, dtype=dtype, rngs=rngs)
        self.down = Dense(hidden, width, axes=("mlp", "embed"), use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = constrain(jax.nn.silu(self.gate(x)) * self.up(x), ("act_batch", "act_seq", "act_mlp"))
        return self.down(h)


class GeluMLP(nnx.Module):
    """DiT's FFN: Linear -> GELU (tanh approximation, as DiT) -> Linear, with biases."""

    def __init__(self, width: int, hidden: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.up = Dense(width, hidden, axes=("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.down = Dense(hidden, width, axes=("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.gelu(self.up(x), approximate=True)
        return self.down(constrain(h, ("act_batch", "act_seq", "act_mlp")))


def block_style(cfg) -> str:
    """cfg.block_style, "llama" when the config predates the key; unknown names fail."""
    style = cfg.get("block_style", "llama")
    if style not in BLOCK_STYLES:
        raise ValueError(f"block_style {style!r} unknown; choose one of {', '.join(BLOCK_STYLES)}")
    return style


def block_norm(cfg, width: int, *, affine: bool, rngs: nnx.Rngs):
    """The style's norm: RMSNorm (llama) or LayerNorm (dit); `affine` adds its learned scale
    (and LayerNorm's bias). Modulated norms have none: adaLN supplies scale and shift."""
    if block_style(cfg) == "llama":
        return RMSNorm(width, eps=cfg.norm_eps, use_scale=affine, rngs=rngs)
    return LayerNorm(width, eps=cfg.norm_eps, use_affine=affine, rngs=rngs)


def per_token(modulation: jax.Array, token_segments: jax.Array | None) -> jax.Array:
    """[B, S, K, W] per-segment values -> [B, N or 1, K, W] per token (broadcast if unpacked)."""
    if token_segments is None:
        return modulation[:, :1]
    # Padding tokens carry segment id S: clip so they read a real row (their output is dropped).
    idx = jnp.clip(token_segments, 0, modulation.shape[1] - 1)
    return jnp.take_along_axis(modulation, idx[:, :, None, None], axis=1)


class TransformerBlock(nnx.Module):
    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        w, dit = cfg.width, block_style(cfg) == "dit"
        # Creation order fixes the parameter RNG streams: keep it (llama checkpoints and tests).
        self.modulation_table = param(rngs, nnx.initializers.zeros, (NUM_MODULATIONS, w),
                                      ("norm", "embed"))
        self.attn_norm = block_norm(cfg, w, affine=False, rngs=rngs)
        self.self_attn = MultiHeadAttention(w, cfg.num_heads, use_bias=dit, dtype=dtype, rngs=rngs)
        self.cross_norm = block_norm(cfg, w, affine=True, rngs=rngs)
        self.cross_attn = MultiHeadAttention(w, cfg.num_heads, use_bias=dit, dtype=dtype, rngs=rngs)
        self.ffn_norm = block_norm(cfg, w, affine=False, rngs=rngs)
        self.ffn = (GeluMLP if dit else SwiGLU)(w, cfg.mlp_dim, dtype=dtype, rngs=rngs)
        self.backend, self.context_parallel = cfg.attention, cfg.context_parallel

    def __call__(self, x, pos, modulation, text, text_mask, token_segments=None,
                 text_segments=None):
        """x [B, N, W]; pos [1 or B, N, W]; modulation [B, S, 6, W] float32 (S = 1 unpacked);
        text [B, L, W], text_mask [B, L]; token_segments [B, N] / text_segments [B, L] int32
        (packed sequences) or None."""
        mod = per_token(modulation + self.modulation_table[...][None, None], token_segments)
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod[:, :, i] for i in range(NUM_MODULATIONS))
        x = constrain(x + pos.astype(x.dtype), RESIDUAL)

        h = (self.attn_norm(x) * (1 + scale1) + shift1).astype(x.dtype)
        a = self.self_attn
        seg = None if token_segments is None else (token_segments, token_segments)
        out = attention(a.heads(a.q(h)), a.heads(a.k(h)), a.heads(a.v(h)), None, seg,
                        backend=self.backend, context_parallel=self.context_parallel)
        x = x + (gate1 * a.output(out)).astype(x.dtype)

        c = self.cross_attn
        seg = None if token_segments is None else (token_segments, text_segments)
        out = attention(c.heads(c.q(self.cross_norm(x))), c.heads(c.k(text), "act_text"),
                        c.heads(c.v(text), "act_text"),
                        text_mask, seg, backend=_cross_backend(mesh_backend(self.backend)),
                        context_parallel=None)
        x = x + c.o(out.reshape(out.shape[0], out.shape[1], -1))

        h = (self.ffn_norm(x) * (1 + scale2) + shift2).astype(x.dtype)
        x = x + (gate2 * self.ffn(h)).astype(x.dtype)
        return constrain(x, RESIDUAL)


def _cross_backend(backend: str) -> str:
    """Cross-attention keys are a few hundred text tokens: the memory-linear pure-JAX kernel
    serves it wherever self-attention uses splash (whose blocks want long key sequences)."""
    return "chunked" if backend == "splash" else backend
