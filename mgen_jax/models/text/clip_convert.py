"""Load a transformers-format CLIP / MetaCLIP text tower into CLIPTextTransformer.

    cfg, params = load_clip_text("path/to/metaclip-h14")   # config.json + weights
    model = PureModel.create(lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).bind(params)

The folder may hold a `CLIPTextModel` (config is a CLIPTextConfig; keys `text_model.*` or bare)
or a whole `CLIPModel` (config is a CLIPConfig with `text_config`): then the vision tower,
both projections and logit_scale are skipped, and the skip is logged. Anything else that does
not fit raises a ValueError naming every unmapped, missing and mis-shaped key.
Checkpoint files are read with the TAE converter's readers (safetensors, .bin, sharded index).
"""
import json
import logging
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.state_dict_files import load_state_dict_file
from mgen_jax.checkpointing.state_dict_mapping import fill_state, raise_on_mismatch
from mgen_jax.models.text.clip_text import ACTIVATIONS, CLIPTextTransformer

log = logging.getLogger(__name__)

WEIGHTS_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
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
# Checkpoint files


def load_transformers_config(path: str) -> dict:
    file = os.path.join(path, "config.json")
    if not os.path.isfile(file):
        raise FileNotFoundError(f"no config.json in {path}")
    with open(file) as f:
        return json.load(f)


def load_transformers_state_dict(path: str) -> dict[str, np.ndarray]:
    """Flat {key: numpy array} from a transformers folder (safetensors preferred over .bin,
    single file over shards) or from one weights file."""
    if os.path.isfile(path):
        return load_state_dict_file(path)
    for name in WEIGHTS_NAMES:
        if os.path.isfile(os.path.join(path, name)):
            return load_state_dict_file(os.path.join(path, name))
    found = sorted(os.listdir(path)) if os.path.isdir(path) else "(not a folder)"
    raise FileNotFoundError(f"no {' / '.join(WEIGHTS_NAMES)} in {path}; found {found}")


# ---------------------------------------------------------------------------------------------
# Parameter mapping


def transformers_key(path: tuple) -> str:
    """The transformers key (without `text_model.`) of one of our parameters."""
    key = ".".join(str(p) for p in path)
    if key in ("token_embedding", "position_embedding"):
        return f"embeddings.{key}.weight"
    key = re.sub(r"^layers\.", "encoder.layers.", key)
    return re.sub(r"\.(kernel|scale)$", ".weight", key)


def convert_clip_text(state_dict: dict, cfg, *, full_model: bool = False) -> dict:
    """Params (nnx.to_pure_dict layout of CLIPTextTransformer(cfg)) from a transformers state
    dict. Keys may carry the `text_model.` prefix or not. With full_model=True (a CLIPModel
    checkpoint) vision / projection / logit_scale keys are skipped; otherwise every key must
    fill a parameter. Raises a ValueError listing every problem at once."""
    checkpoint, original, duplicates, skipped = {}, {}, [], []
    for key, value in state_dict.items():
        if _BUFFERS.match(key):
            continue
        if full_model and _FULL_MODEL_EXTRA.match(key):
            skipped.append(key)
            continue
        bare = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if bare in checkpoint:
            duplicates.append(f"{original[bare]} / {key}")
        checkpoint[bare], original[bare] = value, key
    if skipped:
        log.info("CLIP text: skipped %d keys of the full CLIPModel checkpoint (vision tower, "
                 "projections, logit_scale)", len(skipped))

    state = nnx.state(nnx.eval_shape(lambda: CLIPTextTransformer(cfg, rngs=nnx.Rngs(0))))
    missing, mismatched = fill_state(state, checkpoint, transformers_key,
                                     display=lambda key: original.get(key, PREFIX + key))
    problems = []
    if duplicates:
        problems.append("keys given both with and without 'text_model.': "
                        + ", ".join(duplicates))
    raise_on_mismatch("CLIP text tower", problems=problems,
                      unmapped=[original[k] for k in checkpoint], missing=missing,
                      mismatched=mismatched)
    return nnx.to_pure_dict(state)


def load_clip_text(path: str, *, weights: str | None = None
                   ) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) from a transformers CLIPTextModel or CLIPModel folder (`weights` names
    another weights file). Bind with PureModel.create(...).bind(params)."""
    config = load_transformers_config(path)
    cfg = clip_config_from_transformers(config)
    params = convert_clip_text(load_transformers_state_dict(weights or path), cfg,
                               full_model=is_full_clip_config(config))
    return cfg, jax.tree.map(jnp.asarray, params)
