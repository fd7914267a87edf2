"""Load a transformers-format T5 encoder (T5 v1.1 / UL2 / ByT5 / mT5) into our T5Encoder.

    cfg, params = load_t5_encoder("path/to/t5-v1_1-xxl")   # config.json + weights
    cfg, params = load_t5_encoder(path, mesh=mesh, rules="default")  # straight into shards
    model = PureModel.create(lambda rngs: T5Encoder(cfg, rngs=rngs)).bind(params)

The folder may hold a `T5EncoderModel` (keys `shared.weight`, `encoder.*`) or a whole
`T5ForConditionalGeneration` (config is an encoder-decoder): then `decoder.*` and `lm_head.*` are
skipped, and the skip is logged. The relative-attention table lives only in block 0, as in
transformers. Anything else that does not fit raises a ValueError naming every unmapped, missing
and mis-shaped key, before any tensor is read. Tensors are streamed one at a time
(checkpointing/lazy_state_dict.py: safetensors, .bin, sharded index), so host memory holds about
one tensor, never the model.
"""
import logging
import re

import ml_collections
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.state_dict_mapping import as_source, stream_params, target_shardings
from mgen_jax.checkpointing.transformers_folder import (load_transformers_config,
                                                        open_transformers_weights)
from mgen_jax.models.text.t5_encoder import DENSE_ACT_FNS, FEED_FORWARDS, T5Encoder

log = logging.getLogger(__name__)

MODEL_TYPES = ("t5", "mt5")  # same encoder; umt5 has a relative table in every block
# Keys of a full T5ForConditionalGeneration with no place in the encoder.
_FULL_MODEL_EXTRA = re.compile(r"^(decoder\.|lm_head\.)")
# transformers' encoder embedding is the `shared` table (tied); some files store it this way.
_SHARED, _EMBED_ALIAS = "shared.weight", "encoder.embed_tokens.weight"

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
    expected_act = DENSE_ACT_FNS[proj]
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
        return _SHARED
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


def convert_t5_encoder(state_dict, cfg, *, full_model: bool = False, mesh=None, rules=None,
                       shardings: dict | None = None) -> dict:
    """Params (nnx.to_pure_dict layout of T5Encoder(cfg)) from a transformers state dict: a
    {key: array} dict or a LazyStateDict, streamed one tensor at a time into the shardings of
    `mesh` under `rules` (see state_dict_mapping.target_shardings) or into `shardings` (a pure
    dict matching the params); default device without either. With full_model=True (an
    encoder-decoder checkpoint) decoder.* / lm_head.* keys are skipped; otherwise every key must
    fill a parameter. Raises a ValueError listing every problem before reading a tensor (the one
    exception: when both copies of the tied embedding are stored, the two are read and
    compared)."""
    source = as_source(state_dict)
    skipped = [k for k in source.keys() if full_model and _FULL_MODEL_EXTRA.match(k)]
    if skipped:
        log.info("T5 encoder: skipped %d keys of the encoder-decoder checkpoint (decoder.*, "
                 "lm_head.*)", len(skipped))
    embed_key, conflicts = _SHARED, []
    if _EMBED_ALIAS in source:  # the tied copy of shared.weight
        if _SHARED not in source:
            embed_key = _EMBED_ALIAS
        else:
            skipped.append(_EMBED_ALIAS)
            if not np.array_equal(source.read(_EMBED_ALIAS), source.read(_SHARED)):
                conflicts.append(f"{_EMBED_ALIAS} differs from {_SHARED} (they are tied in "
                                 "transformers)")

    def key_of(path):
        key = transformers_key(path)
        return embed_key if key == _SHARED else key

    state = nnx.state(nnx.eval_shape(lambda: T5Encoder(cfg, rngs=nnx.Rngs(0))))
    if shardings is None:
        shardings = target_shardings(state, mesh, rules)
    return stream_params("T5 encoder", state, source, key_of, shardings=shardings,
                         skip=skipped, problems=conflicts)


def load_t5_encoder(path: str, *, weights: str | None = None, mesh=None, rules=None,
                    shardings: dict | None = None) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) from a transformers T5EncoderModel or T5ForConditionalGeneration folder
    (`weights` names another weights file), streamed tensor by tensor into the shardings of
    `mesh` under `rules` or into `shardings` (default device without either). Bind with
    PureModel.create(...).bind(params)."""
    config = load_transformers_config(path)
    cfg = t5_config_from_transformers(config)
    with open_transformers_weights(weights or path) as source:
        params = convert_t5_encoder(source, cfg, full_model=is_encoder_decoder_config(config),
                                    mesh=mesh, rules=rules, shardings=shardings)
    return cfg, params
