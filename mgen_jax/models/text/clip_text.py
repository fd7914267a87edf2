"""CLIP / MetaCLIP text tower in Flax NNX, numerically equal to transformers' `CLIPTextModel`.

Token + learned absolute position embeddings, pre-LN transformer blocks with causal
self-attention (biased q/k/v/out projections, scale head_dim**-0.5) and an MLP
(fc1 -> GELU or QuickGELU -> fc2), then a final LayerNorm. The pooled output is the final hidden
state at the end-of-text token, chosen exactly as transformers chooses it (see `pooled_index`).

Module names mirror the transformers checkpoint layout (`layers.i.self_attn.q_proj`, `mlp.fc1`,
`layer_norm1`, ...) so the converter in checkpointing/clip_convert.py is a plain key map.

    cfg = clip_text_config("metaclip-h14")
    model = CLIPTextTransformer(cfg, rngs=nnx.Rngs(0))
    hidden, pooled = model(ids, mask)             # [B, L, D], [B, D]
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mgen_jax.models.layers import Dense, LayerNorm, param

ACTIVATIONS = ("quick_gelu", "gelu")


def check_clip_text_config(cfg) -> None:
    if cfg.hidden_act not in ACTIVATIONS:
        raise ValueError(f"CLIP text hidden_act={cfg.hidden_act!r}: supported are {ACTIVATIONS}")
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"CLIP text hidden_size={cfg.hidden_size} is not divisible by "
                         f"num_heads={cfg.num_heads}")


def quick_gelu(x: jax.Array) -> jax.Array:
    """OpenAI CLIP's GELU approximation: x * sigmoid(1.702 x)."""
    return x * jax.nn.sigmoid(1.702 * x)


def _activation(name: str):
    if name == "quick_gelu":
        return quick_gelu
    if name == "gelu":  # transformers' "gelu" is the exact erf form
        return lambda x: jax.nn.gelu(x, approximate=False)
    raise ValueError(f"CLIP text hidden_act={name!r}: supported are {ACTIVATIONS}")


class CLIPAttention(nnx.Module):
    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.q_proj = Dense(d, d, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.k_proj = Dense(d, d, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.v_proj = Dense(d, d, axes=("embed", "heads"), dtype=dtype, rngs=rngs)
        self.out_proj = Dense(d, d, axes=("heads", "embed"), dtype=dtype, rngs=rngs)
        self.num_heads, self.head_dim = cfg.num_heads, d // cfg.num_heads

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        b, length, _ = x.shape
        split = lambda t: t.reshape(b, length, self.num_heads, self.head_dim)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        scores = scores * (self.head_dim ** -0.5) + bias
        probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, length, -1)
        return self.out_proj(out)


class CLIPMLP(nnx.Module):
    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.fc1 = Dense(cfg.hidden_size, cfg.intermediate_size, axes=("embed", "mlp"),
                         dtype=dtype, rngs=rngs)
        self.fc2 = Dense(cfg.intermediate_size, cfg.hidden_size, axes=("mlp", "embed"),
                         dtype=dtype, rngs=rngs)
        self.act = _activation(cfg.hidden_act)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.layer_norm1 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, rngs=rngs)
        self.self_attn = CLIPAttention(cfg, dtype=dtype, rngs=rngs)
        self.layer_norm2 = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, rngs=rngs)
        self.mlp = CLIPMLP(cfg, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x), bias)
        return x + self.mlp(self.layer_norm2(x))


def attention_bias(mask: jax.Array) -> jax.Array:
    """[B, 1, L, L] additive bias: 0 where query i may see key j (j <= i and key j is not
    padding), the most negative float32 elsewhere (transformers' eager convention: a fully
    masked row becomes a uniform average instead of NaN)."""
    length = mask.shape[1]
    causal = jnp.tril(jnp.ones((length, length), bool))
    allowed = causal[None, None] & mask[:, None, None, :].astype(bool)
    return jnp.where(allowed, 0.0, jnp.finfo(jnp.float32).min).astype(jnp.float32)


def pooled_index(ids: jax.Array, eos_token_id: int) -> jax.Array:
    """[B] position of the pooled token, as transformers' CLIPTextTransformer picks it: with the
    legacy eos_token_id == 2 (configs written before transformers PR #24773) the position of the
    largest id (CLIP's end-of-text token is the last in the vocabulary); otherwise the first
    position holding eos_token_id (padding may repeat it)."""
    ids = ids.astype(jnp.int32)
    if eos_token_id == 2:
        return jnp.argmax(ids, axis=-1)
    return jnp.argmax((ids == eos_token_id).astype(jnp.int32), axis=-1)


class CLIPTextTransformer(nnx.Module):
    """ids [B, L] int32 + mask [B, L] (1 = token, 0 = padding), L <= max_positions ->
    (last_hidden_state [B, L, D], pooled [B, D])."""

    def __init__(self, cfg, *, dtype=jnp.float32, rngs: nnx.Rngs):
        check_clip_text_config(cfg)
        init = nnx.initializers.normal(0.02)
        self.token_embedding = param(rngs, init, (cfg.vocab_size, cfg.hidden_size),
                                     ("vocab", "embed"))
        self.position_embedding = param(rngs, nnx.initializers.normal(0.01),
                                        (cfg.max_positions, cfg.hidden_size), ("table", "embed"))
        self.layers = nnx.List([CLIPEncoderLayer(cfg, dtype=dtype, rngs=rngs)
                                for _ in range(cfg.num_layers)])
        self.final_layer_norm = LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps, rngs=rngs)
        self.eos_token_id = int(cfg.eos_token_id)
        self.max_positions = int(cfg.max_positions)
        self.dtype = dtype

    def __call__(self, ids: jax.Array, mask: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
        b, length = ids.shape
        if length > self.max_positions:
            raise ValueError(f"CLIP text: sequence length {length} exceeds max_positions="
                             f"{self.max_positions}")
        if mask is None:
            mask = jnp.ones((b, length), jnp.int32)
        x = self.token_embedding[...][ids] + self.position_embedding[...][:length][None]
        x = x.astype(self.dtype)
        bias = attention_bias(mask)
        for layer in self.layers:
            x = layer(x, bias)
        hidden = self.final_layer_norm(x)
        pooled = hidden[jnp.arange(b), pooled_index(ids, self.eos_token_id)]
        return hidden, pooled


def clip_text_num_params(cfg) -> int:
    """Parameter count from the architecture alone (embeddings, blocks, final norm)."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    block = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * (2 * d)
    return (cfg.vocab_size + cfg.max_positions) * d + cfg.num_layers * block + 2 * d


def extend_positions(params_or_table, new_length: int, *, keep: int = 20):
    """Stretch a learned position-embedding table to `new_length` positions (77 -> 256 for
    Movie Gen's long-prompt MetaCLIP), before fine-tuning at the new length.

    Choice: Long-CLIP's "knowledge-preserved stretching". The first `keep` rows are copied
    exactly; rows keep..new_length-1 are a linear interpolation of the old rows keep..old-1,
    stretched so that new row `keep` is old row `keep` and the last new row is the last old row.
    Why not plain linear interpolation of the whole table: CLIP's first ~20 positions are the
    well-trained ones (Long-CLIP measured an effective length of ~20 tokens) and carry almost all
    short prompts; copying them means a prompt that fits in `keep` tokens (BOS and EOS included)
    gets the same hidden states and pooled output as before the extension, up to float32
    rounding (attention is causal, so later positions cannot reach it), i.e. fine-tuning starts
    from the original model for short prompts instead of from a perturbed one. keep=0 gives
    plain linear interpolation.

    Accepts the table [P, D] (returns the new table) or a params dict holding
    `position_embedding` at its top level (returns a copy with the new table; set the config's
    max_positions = new_length to bind it)."""
    if isinstance(params_or_table, dict):
        if "position_embedding" not in params_or_table:
            raise ValueError("extend_positions: params dict has no 'position_embedding' "
                             f"(keys: {sorted(map(str, params_or_table))})")
        out = dict(params_or_table)
        out["position_embedding"] = extend_positions(params_or_table["position_embedding"],
                                                     new_length, keep=keep)
        return out
    table = params_or_table
    old = table.shape[0]
    if table.ndim != 2:
        raise ValueError(f"extend_positions: expected a [positions, dim] table, got {table.shape}")
    if new_length < old:
        raise ValueError(f"extend_positions: new_length={new_length} < current {old} positions")
    if not 0 <= keep < old:
        raise ValueError(f"extend_positions: keep={keep} must be in [0, {old})")
    if new_length == old:
        return table
    xp = jnp if isinstance(table, jax.Array) else np
    # Source coordinate of each new row keep..new_length-1, from keep to old-1 inclusive.
    src = np.linspace(keep, old - 1, new_length - keep)
    lo = np.clip(np.floor(src).astype(np.int64), 0, old - 1)
    hi = np.minimum(lo + 1, old - 1)
    w = (src - lo).astype(np.float32)[:, None]
    t32 = table.astype(xp.float32)
    stretched = t32[lo] * (1.0 - w) + t32[hi] * w
    return xp.concatenate([t32[:keep], stretched], axis=0).astype(table.dtype)
