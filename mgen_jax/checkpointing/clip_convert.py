"""Load a transformers-format CLIP / MetaCLIP text tower into CLIPTextTransformer.

    cfg, params = load_clip_text("path/to/metaclip-h14")   # config.json + weights
    cfg, params = load_clip_text(path, mesh=mesh, rules="default")  # straight into shards
    model = PureModel.create(lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).bind(params)

The folder may hold a `CLIPTextModel` (config is a CLIPTextConfig; keys `text_model.*` or bare)
or a whole `CLIPModel` (config is a CLIPConfig with `text_config`): then the vision tower,
both projections and logit_scale are skipped, and the skip is logged. Anything else that does
not fit raises a ValueError naming every unmapped, missing and mis-shaped key, before any tensor
is read. Tensors are streamed one at a time (checkpointing/lazy_state_dict.py: safetensors, .bin,
sharded index), so host memory holds about one tensor, never the model.
"""
import dataclasses
import logging
import re

import ml_collections
from flax import nnx

from mgen_jax.checkpointing.state_dict_mapping import as_source, stream_params, target_shardings
from mgen_jax.checkpointing.transformers_folder import (load_transformers_config,
                                                        open_transformers_weights)
from mgen_jax.models.text.clip_text import ACTIVATIONS, CLIPTextTransformer

log = logging.getLogger(__name__)

PREFIX = "text_model."
# Keys of a full CLIPModel with no place in the text tower.
_FULL_MODEL_EXTRA = re.compile(r"^(vision_model\.|visual_projection\.|text_projection\.|"
                               r"logit_scale$)")
# A non-persistent buffer that old transformers versions saved; always arange, never a weight.
_BUFFERS = re.compile(r"^(text_model\.)?embeddings\.position_ids$")

# ---------------------------------------------------------------------------------------------
# Config

# CLIPTextConfig defaults (transformers >= 4.31), used for fields a config.json leaves out.
_DEFAULTS = dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                 num_hidden_layers=12, num_attention_heads=8, max_position_embeddings=77,
                 hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=49407)


def is_full_clip_config(config: dict) -> bool:
    return "text_config" in config


def clip_config_from_transformers(config: dict) -> ml_collections.ConfigDict:
    """Our CLIP text config for a transformers config.json: a CLIPTextConfig dict, or a full
    CLIPConfig dict (its `text_config` is used)."""
    if is_full_clip_config(config):
        config = config["text_config"] or {}
    model_type = config.get("model_type", "clip_text_model")
    if model_type not in ("clip_text_model", "clip"):
        raise ValueError(f"CLIP text config model_type={model_type!r}: expected "
                         "'clip_text_model' (or a 'clip' CLIPConfig)")
    get = lambda k: config[k] if config.get(k) is not None else _DEFAULTS[k]
    act = get("hidden_act")
    if act not in ACTIVATIONS:
        raise ValueError(f"CLIP text config hidden_act={act!r}: supported are {ACTIVATIONS}")
    eos = get("eos_token_id")
    if isinstance(eos, (list, tuple)):
        raise ValueError(f"CLIP text config eos_token_id={eos!r}: the pooled token needs a "
                         "single id")
    cfg = ml_collections.ConfigDict(dict(
        vocab_size=int(get("vocab_size")), hidden_size=int(get("hidden_size")),
        intermediate_size=int(get("intermediate_size")),
        num_layers=int(get("num_hidden_layers")), num_heads=int(get("num_attention_heads")),
        max_positions=int(get("max_position_embeddings")), hidden_act=act,
        layer_norm_eps=float(get("layer_norm_eps")), eos_token_id=int(eos),
        preset="transformers"))
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"CLIP text config hidden_size={cfg.hidden_size} is not divisible by "
                         f"num_attention_heads={cfg.num_heads}")
    return cfg


# ---------------------------------------------------------------------------------------------
# Parameter mapping


def transformers_key(path: tuple) -> str:
    """The transformers key (without `text_model.`) of one of our parameters."""
    key = ".".join(str(p) for p in path)
    if key in ("token_embedding", "position_embedding"):
        return f"embeddings.{key}.weight"
    key = re.sub(r"^layers\.", "encoder.layers.", key)
    return re.sub(r"\.(kernel|scale)$", ".weight", key)


@dataclasses.dataclass
class TowerKeys:
    """A CLIP checkpoint's keys sorted for one tower (see index_tower_keys)."""
    original: dict   # key without the tower prefix -> the key as the checkpoint spells it
    buffers: list    # saved non-persistent buffers (position_ids): never weights
    skipped: list    # the other tower's keys of a full CLIPModel
    problems: list   # keys present both with and without the prefix


def index_tower_keys(keys, prefix: str, *, buffers: re.Pattern,
                     other_tower: re.Pattern | None = None) -> TowerKeys:
    """Index a CLIP checkpoint's keys for one tower (text or vision). Transformers spells a
    tower's keys with its prefix (`text_model.`, `vision_model.`) or without it, depending on
    the class and version that saved it, so parameters are looked up by their bare key; a key
    present in both spellings is a problem. `buffers` and, for a full CLIPModel, `other_tower`
    match keys that are deliberately left out."""
    out = TowerKeys({}, [], [], [])
    duplicates = []
    for key in keys:
        if buffers.match(key):
            out.buffers.append(key)
        elif other_tower is not None and other_tower.match(key):
            out.skipped.append(key)
        else:
            bare = key[len(prefix):] if key.startswith(prefix) else key
            if bare in out.original:
                duplicates.append(f"{out.original[bare]} / {key}")
            out.original[bare] = key
    if duplicates:
        out.problems.append(f"keys given both with and without '{prefix}': "
                            + ", ".join(duplicates))
    return out


def convert_clip_text(state_dict, cfg, *, full_model: bool = False, mesh=None, rules=None,
                      shardings: dict | None = None) -> dict:
    """Params (nnx.to_pure_dict layout of CLIPTextTransformer(cfg)) from a transformers state
    dict: a {key: array} dict or a LazyStateDict, streamed one tensor at a time into the
    shardings of `mesh` under `rules` (see state_dict_mapping.target_shardings) or into
    `shardings` (a pure dict matching the params); default device without either. Keys may
    carry the `text_model.` prefix or not. With full_model=True (a CLIPModel checkpoint) vision /
    projection / logit_scale keys are skipped; otherwise every key must fill a parameter. Raises
    a ValueError listing every problem before reading a tensor."""
    source = as_source(state_dict)
    keys = index_tower_keys(source.keys(), PREFIX, buffers=_BUFFERS,
                            other_tower=_FULL_MODEL_EXTRA if full_model else None)
    if keys.skipped:
        log.info("CLIP text: skipped %d keys of the full CLIPModel checkpoint (vision tower, "
                 "projections, logit_scale)", len(keys.skipped))

    def key_of(path):
        bare = transformers_key(path)
        return keys.original.get(bare, PREFIX + bare)

    state = nnx.state(nnx.eval_shape(lambda: CLIPTextTransformer(cfg, rngs=nnx.Rngs(0))))
    if shardings is None:
        shardings = target_shardings(state, mesh, rules)
    return stream_params("CLIP text tower", state, source, key_of, shardings=shardings,
                         skip=keys.buffers + keys.skipped, problems=keys.problems)


def load_clip_text(path: str, *, weights: str | None = None, mesh=None, rules=None,
                   shardings: dict | None = None) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) from a transformers CLIPTextModel or CLIPModel folder (`weights` names
    another weights file), streamed tensor by tensor into the shardings of `mesh` under `rules`
    or into `shardings` (default device without either). Bind with
    PureModel.create(...).bind(params)."""
    config = load_transformers_config(path)
    cfg = clip_config_from_transformers(config)
    with open_transformers_weights(weights or path) as source:
        params = convert_clip_text(source, cfg, full_model=is_full_clip_config(config),
                                   mesh=mesh, rules=rules, shardings=shardings)
    return cfg, params
