"""One Movie Gen transformer block (LLaMa-3 style, with the paper's three changes):

    x = x + pos                                   (positions added at every layer)
    x = x + g1 * SelfAttn(RMSNorm(x) * (1 + s1) + b1)     bidirectional, adaLN-modulated
    x = x + CrossAttn(RMSNorm(x), text)                     between self-attention and FFN
    x = x + g2 * SwiGLU(RMSNorm(x) * (1 + s2) + b2)

(b, s, g) come from the shared timestep modulation plus this layer's learned table.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.attention import dot_product_attention
from mgen_jax.models.layers import Dense, RMSNorm, param
from mgen_jax.parallel.logical_rules import constrain

NUM_MODULATIONS = 6


class MultiHeadAttention(nnx.Module):
    def __init__(self, width: int, num_heads: int, *, kv_width: int | None = None,
                 backend: str = "xla", dtype=jnp.float32, rngs: nnx.Rngs):
        kv_width = kv_width or width
        self.q = Dense(width, width, axes=("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.k = Dense(kv_width, width, axes=("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.v = Dense(kv_width, width, axes=("embed", "heads"), use_bias=False, dtype=dtype, rngs=rngs)
        self.o = Dense(width, width, axes=("heads", "embed"), use_bias=False, dtype=dtype, rngs=rngs)
        self.num_heads, self.backend = num_heads, backend

    def __call__(self, x: jax.Array, context: jax.Array, context_mask=None) -> jax.Array:
        b, lq, width = x.shape
        heads = lambda t: constrain(t.reshape(b, t.shape[1], self.num_heads, -1),
                                    ("act_batch", "act_seq", "act_heads", "act_kv"))
        q, k, v = heads(self.q(x)), heads(self.k(context)), heads(self.v(context))
        out = dot_product_attention(q, k, v, context_mask, backend=self.backend)
        return self.o(out.reshape(b, lq, width))


class SwiGLU(nnx.Module):
    def __init__(self, width: int, hidden: int, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.gate = Dense(width, hidden, axes=("embed", "mlp"), use_bias=False, dtype=dtype, rngs=rngs)
        self.up = Dense(width, hidden, axes=("embed", "mlp"), use_bias=False, dtype=dtype, rngs=rngs)
        self.down = Dense(hidden, width, axes=("mlp", "embed"), use_bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = constrain(jax.nn.silu(self.gate(x)) * self.up(x), ("act_batch", "act_seq", "act_mlp"))
        return self.down(h)


class TransformerBlock(nnx.Module):
    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        w = cfg.width
        self.modulation_table = param(rngs, nnx.initializers.zeros, (NUM_MODULATIONS, w),
                                      ("norm", "embed"))
        self.attn_norm = RMSNorm(w, eps=cfg.norm_eps, use_scale=False, rngs=rngs)
        self.self_attn = MultiHeadAttention(w, cfg.num_heads, backend=cfg.attention, dtype=dtype,
                                            rngs=rngs)
        self.cross_norm = RMSNorm(w, eps=cfg.norm_eps, rngs=rngs)
        self.cross_attn = MultiHeadAttention(w, cfg.num_heads, backend=cfg.attention, dtype=dtype,
                                             rngs=rngs)
        self.ffn_norm = RMSNorm(w, eps=cfg.norm_eps, use_scale=False, rngs=rngs)
        self.ffn = SwiGLU(w, cfg.mlp_dim, dtype=dtype, rngs=rngs)

    def __call__(self, x, pos, modulation, text, text_mask):
        """x [B, N, W], pos [N, W], modulation [B, 6, W] (float32), text [B, L, W]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(
            modulation + self.modulation_table[...][None], NUM_MODULATIONS, axis=1)
        x = constrain(x + pos[None].astype(x.dtype), ("act_batch", "act_seq", "act_embed"))
        h = (self.attn_norm(x) * (1 + scale1) + shift1).astype(x.dtype)
        x = x + (gate1 * self.self_attn(h, h)).astype(x.dtype)
        x = x + self.cross_attn(self.cross_norm(x), text, text_mask)
        h = (self.ffn_norm(x) * (1 + scale2) + shift2).astype(x.dtype)
        x = x + (gate2 * self.ffn(h)).astype(x.dtype)
        return constrain(x, ("act_batch", "act_seq", "act_embed"))
