"""Load a transformers-format T5 encoder (T5 v1.1 / UL2 / ByT5 / mT5) into our T5Encoder.

    cfg, params = load_t5_encoder("path/to/t5-v1_1-xxl")   # config.json + weights
    model = PureModel.create(lambda rngs: T5Encoder(cfg, rngs=rngs)).bind(params)

The folder may hold a `T5EncoderModel` (keys `shared.weight`, `encoder.*`) or a whole
`T5ForConditionalGeneration` (config is an encoder-decoder): then `decoder.*` and `lm_head.*` are
skipped, and the skip is logged. The relative-attention table lives only in block 0, as in
transformers. Anything else that does not fit raises a ValueError naming every unmapped, missing
and mis-shaped key. Checkpoint files are read with the shared readers (safetensors, .bin,
sharded index) through clip_convert's folder helpers.
"""
import logging
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.state_dict_mapping import fill_state, raise_on_mismatch
from mgen_jax.models.text.clip_convert import (load_transformers_config,
                                               load_transformers_state_dict)
from mgen_jax.models.text.t5_encoder import FEED_FORWARDS, T5Encoder

log = logging.getLogger(__name__)

MODEL_TYPES = ("t5", "mt5")  # same encoder; umt5 has a relative table in every block
# Keys of a full T5ForConditionalGeneration with no place in the encoder.
_FULL_MODEL_EXTRA = re.compile(r"^(decoder\.|lm_head\.)")
# transformers' encoder embedding is the `shared` table (tied); some files store it this way.
_EMBED_ALIAS = "encoder.embed_tokens.weight"

# ---------------------------------------------------------------------------------------------
# Config

# T5Config defaults (transformers), used for fields a config.json leaves out.
_DEFAULTS = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128,
                 layer_norm_epsilon=1e-6, feed_forward_proj="relu", is_decoder=False)


def is_encoder_decoder_config(config: dict) -> bool:
    """True when config.json describes a whole encoder-decoder (T5ForConditionalGeneration /
    T5Model), whose decoder and lm_head keys may then be skipped."""
    archs = config.get("architectures") or []
    if archs and all(a.endswith("EncoderModel") for a in archs):
        return False
    return bool(config.get("is_encoder_decoder", True))


def t5_config_from_transformers(config: dict) -> ml_collections.ConfigDict:
    """Our T5Encoder config for a transformers T5Config / MT5Config config.json dict."""
    model_type = config.get("model_type", "t5")
    if model_type not in MODEL_TYPES:
        raise ValueError(f"T5 config model_type={model_type!r}: supported are {MODEL_TYPES} "
                         "(umt5 keeps a relative-attention table in every block)")
    get = lambda k: config[k] if config.get(k) is not None else _DEFAULTS[k]
    if get("is_decoder"):
        raise ValueError("T5 config is_decoder=True: only the bidirectional encoder is supported")
    proj = get("feed_forward_proj")
    if proj not in FEED_FORWARDS:
        raise ValueError(f"T5 config feed_forward_proj={proj!r}: supported are "
                         f"{sorted(FEED_FORWARDS)}")
    # transformers derives dense_act_fn from feed_forward_proj; a saved one must agree.
    act = config.get("dense_act_fn")
    expected_act = {"gated-gelu": "gelu_new", "relu": "relu"}[proj]
    if act is not None and act != expected_act:
        raise ValueError(f"T5 config dense_act_fn={act!r} with feed_forward_proj={proj!r}: "
                         f"supported is {expected_act!r}")
    cfg = ml_collections.ConfigDict(dict(
        vocab_size=int(get("vocab_size")), d_model=int(get("d_model")), d_kv=int(get("d_kv")),
        d_ff=int(get("d_ff")), num_layers=int(get("num_layers")),
        num_heads=int(get("num_heads")),
        relative_attention_num_buckets=int(get("relative_attention_num_buckets")),
        relative_attention_max_distance=int(get("relative_attention_max_distance")),
        feed_forward_proj=proj, layer_norm_eps=float(get("layer_norm_epsilon")),
        preset="transformers"))
    if cfg.relative_attention_num_buckets < 4 or cfg.relative_attention_num_buckets % 2:
        raise ValueError(f"T5 config relative_attention_num_buckets="
                         f"{cfg.relative_attention_num_buckets}: must be even and >= 4")
    return cfg


# ---------------------------------------------------------------------------------------------
# Parameter mapping


def transformers_key(path: tuple) -> str:
    """The transformers key of one of our T5Encoder parameters."""
    key = ".".join(str(p) for p in path)
    if key == "shared":
        return "shared.weight"
    if key == "final_norm.scale":
        return "encoder.final_layer_norm.weight"
    m = re.fullmatch(r"blocks\.(\d+)\.(\w+)\.(\w+)(?:\.(\w+))?", key)
    if m is None:
        raise AssertionError(f"T5Encoder parameter {key} has no transformers name")
    i, module, name, leaf = m.groups()
    block = f"encoder.block.{i}"
    if module == "attention_norm":
        return f"{block}.layer.0.layer_norm.weight"
    if module == "ffn_norm":
        return f"{block}.layer.1.layer_norm.weight"
    if module == "attention":
        return f"{block}.layer.0.SelfAttention.{name}.weight"
    if module == "ffn":
        return f"{block}.layer.1.DenseReluDense.{name}.weight"
    raise AssertionError(f"T5Encoder parameter {key} has no transformers name")


def convert_t5_encoder(state_dict: dict, cfg, *, full_model: bool = False) -> dict:
    """Params (nnx.to_pure_dict layout of T5Encoder(cfg)) from a transformers state dict. With
    full_model=True (an encoder-decoder checkpoint) decoder.* / lm_head.* keys are skipped;
    otherwise every key must fill a parameter. Raises a ValueError listing every problem."""
    checkpoint, skipped, conflicts = {}, [], []
    for key, value in state_dict.items():
        if full_model and _FULL_MODEL_EXTRA.match(key):
            skipped.append(key)
            continue
        checkpoint[key] = value
    if skipped:
        log.info("T5 encoder: skipped %d keys of the encoder-decoder checkpoint (decoder.*, "
                 "lm_head.*)", len(skipped))
    if _EMBED_ALIAS in checkpoint:  # the tied copy of shared.weight
        alias = checkpoint.pop(_EMBED_ALIAS)
        if "shared.weight" not in checkpoint:
            checkpoint["shared.weight"] = alias
        elif not np.array_equal(np.asarray(alias), np.asarray(checkpoint["shared.weight"])):
            conflicts.append(f"{_EMBED_ALIAS} differs from shared.weight (they are tied in "
                             "transformers)")

    state = nnx.state(nnx.eval_shape(lambda: T5Encoder(cfg, rngs=nnx.Rngs(0))))
    missing, mismatched = fill_state(state, checkpoint, transformers_key)
    raise_on_mismatch("T5 encoder", problems=conflicts, unmapped=list(checkpoint),
                      missing=missing, mismatched=mismatched)
    return nnx.to_pure_dict(state)


def load_t5_encoder(path: str, *, weights: str | None = None
                    ) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) from a transformers T5EncoderModel or T5ForConditionalGeneration folder
    (`weights` names another weights file). Bind with PureModel.create(...).bind(params)."""
    config = load_transformers_config(path)
    cfg = t5_config_from_transformers(config)
    params = convert_t5_encoder(load_transformers_state_dict(weights or path), cfg,
                                full_model=is_encoder_decoder_config(config))
    return cfg, jax.tree.map(jnp.asarray, params)
