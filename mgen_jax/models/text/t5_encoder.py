"""T5 encoder (v1.1 / UL2 / ByT5 family) in Flax NNX.

Pre-norm blocks with T5's RMS LayerNorm (no mean subtraction, no bias), unscaled dot-product
attention with a learned relative-position bias (computed once by the first block and shared by
all blocks), and a gated feed-forward: gated-GELU (T5 v1.1, ByT5) or gated-SiLU (UL2), chosen by
cfg.feed_forward_proj; 'relu' selects the original T5's plain ReLU feed-forward. No biases
anywhere. Module names mirror the transformers checkpoint layout so a weight converter is a plain
key map.

    cfg = t5_config("ul2")                    # or byt5-small/base/large, t5-base, tiny
    model = T5Encoder(cfg, rngs=nnx.Rngs(0))  # t5_num_params(cfg) parameters
    hidden = model(ids, mask)                 # [B, L, d_model]
"""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mgen_jax.models.layers import Dense, RMSNorm, param


def relative_position_bucket(relative_position: jax.Array, *, num_buckets: int,
                             max_distance: int) -> jax.Array:
    """T5's bidirectional bucketing: exact buckets for small offsets, log-spaced beyond."""
    num_buckets //= 2
    buckets = (relative_position > 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(relative_position)
    max_exact = num_buckets // 2
    is_small = n < max_exact
    large = max_exact + (
        jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
        / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
    large = jnp.minimum(large, num_buckets - 1)
    return buckets + jnp.where(is_small, n, large)


class T5Attention(nnx.Module):
    def __init__(self, cfg, *, has_relative_bias: bool, rngs: nnx.Rngs):
        inner = cfg.num_heads * cfg.d_kv
        self.q = Dense(cfg.d_model, inner, axes=("embed", "heads"), use_bias=False, rngs=rngs)
        self.k = Dense(cfg.d_model, inner, axes=("embed", "heads"), use_bias=False, rngs=rngs)
        self.v = Dense(cfg.d_model, inner, axes=("embed", "heads"), use_bias=False, rngs=rngs)
        self.o = Dense(inner, cfg.d_model, axes=("heads", "embed"), use_bias=False, rngs=rngs)
        self.relative_attention_bias = (
            param(rngs, nnx.initializers.normal(1.0), (cfg.relative_attention_num_buckets,
                                                       cfg.num_heads), ("table", "heads"))
            if has_relative_bias else None)
        self.num_heads, self.d_kv = cfg.num_heads, cfg.d_kv
        self.num_buckets = cfg.relative_attention_num_buckets
        self.max_distance = cfg.relative_attention_max_distance

    def position_bias(self, length: int) -> jax.Array:
        """[1, heads, L, L] additive bias from the relative-position table."""
        pos = jnp.arange(length)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None],
                                           num_buckets=self.num_buckets,
                                           max_distance=self.max_distance)
        return jnp.transpose(self.relative_attention_bias[...][buckets], (2, 0, 1))[None]

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        b, length, _ = x.shape
        split = lambda t: t.reshape(b, length, self.num_heads, self.d_kv)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) + bias
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, -1)
        return self.o(out)


# The gate activation of each gated feed-forward, as transformers computes it: 'gated-gelu' is
# gelu_new (the tanh approximation), 'gated-silu' is torch's SiLU (x * sigmoid(x)).
GATE_ACTIVATIONS = {"gated-gelu": lambda x: jax.nn.gelu(x, approximate=True),
                    "gated-silu": jax.nn.silu}


class T5GatedFeedForward(nnx.Module):
    """wo(act(wi_0(x)) * wi_1(x)); act from cfg.feed_forward_proj (GATE_ACTIVATIONS)."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        self.wi_0 = Dense(cfg.d_model, cfg.d_ff, axes=("embed", "mlp"), use_bias=False, rngs=rngs)
        self.wi_1 = Dense(cfg.d_model, cfg.d_ff, axes=("embed", "mlp"), use_bias=False, rngs=rngs)
        self.wo = Dense(cfg.d_ff, cfg.d_model, axes=("mlp", "embed"), use_bias=False, rngs=rngs)
        self.act = GATE_ACTIVATIONS[feed_forward_proj(cfg)]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(self.act(self.wi_0(x)) * self.wi_1(x))


class T5DenseFeedForward(nnx.Module):
    """The original T5's ungated feed-forward: wo(relu(wi(x)))."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        self.wi = Dense(cfg.d_model, cfg.d_ff, axes=("embed", "mlp"), use_bias=False, rngs=rngs)
        self.wo = Dense(cfg.d_ff, cfg.d_model, axes=("mlp", "embed"), use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.wo(jax.nn.relu(self.wi(x)))


# transformers' feed_forward_proj names -> our feed-forward modules.
FEED_FORWARDS = {"gated-gelu": T5GatedFeedForward, "gated-silu": T5GatedFeedForward,
                 "relu": T5DenseFeedForward}
# The `dense_act_fn` transformers' T5Config derives from (and saves next to) each
# feed_forward_proj, for converters that check a config.json's pair is consistent.
DENSE_ACT_FNS = {"gated-gelu": "gelu_new", "gated-silu": "silu", "relu": "relu"}


def feed_forward_proj(cfg) -> str:
    """cfg.feed_forward_proj, defaulting to 'gated-gelu' for configs that predate the key."""
    name = cfg.get("feed_forward_proj", "gated-gelu") if hasattr(cfg, "get") else getattr(
        cfg, "feed_forward_proj", "gated-gelu")
    if name not in FEED_FORWARDS:
        raise ValueError(f"T5 feed_forward_proj={name!r}: supported are {sorted(FEED_FORWARDS)}")
    return name


class T5Block(nnx.Module):
    def __init__(self, cfg, *, has_relative_bias: bool, rngs: nnx.Rngs):
        self.attention_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_eps, rngs=rngs)
        self.attention = T5Attention(cfg, has_relative_bias=has_relative_bias, rngs=rngs)
        self.ffn_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_eps, rngs=rngs)
        self.ffn = FEED_FORWARDS[feed_forward_proj(cfg)](cfg, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        x = x + self.attention(self.attention_norm(x), bias)
        return x + self.ffn(self.ffn_norm(x))


class T5Encoder(nnx.Module):
    """token ids [B, L] + mask [B, L] -> last hidden states [B, L, d_model]."""

    def __init__(self, cfg, *, rngs: nnx.Rngs):
        self.shared = param(rngs, nnx.initializers.normal(1.0), (cfg.vocab_size, cfg.d_model),
                            ("vocab", "embed"))
        self.blocks = nnx.List([T5Block(cfg, has_relative_bias=(i == 0), rngs=rngs)
                                for i in range(cfg.num_layers)])
        self.final_norm = RMSNorm(cfg.d_model, eps=cfg.layer_norm_eps, rngs=rngs)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        x = self.shared[...][ids]
        bias = self.blocks[0].attention.position_bias(ids.shape[1])
        bias = bias + jnp.where(mask[:, None, None, :].astype(bool), 0.0,
                                jnp.finfo(jnp.float32).min)
        for block in self.blocks:
            x = block(x, bias)
        return self.final_norm(x)


def t5_num_params(cfg) -> int:
    """Encoder parameter count from the architecture alone: shared embedding, per block the
    q/k/v/o projections, the feed-forward and two RMS norms, block 0's relative-position table,
    and the final norm."""
    d, inner = cfg.d_model, cfg.num_heads * cfg.d_kv
    ffn_matrices = 2 if feed_forward_proj(cfg) == "relu" else 3
    block = 4 * d * inner + ffn_matrices * d * cfg.d_ff + 2 * d
    return (cfg.vocab_size * d + cfg.num_layers * block
            + cfg.relative_attention_num_buckets * cfg.num_heads + d)
