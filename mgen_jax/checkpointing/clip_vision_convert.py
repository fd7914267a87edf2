"""Load a transformers-format CLIP / MetaCLIP vision tower into CLIPVisionTransformer.

    cfg, params = load_clip_vision("path/to/metaclip-h14")          # config.json + weights
    cfg, params = load_clip_vision(path, mesh=mesh, rules="default")  # straight into shards
    model = PureModel.create(lambda rngs: CLIPVisionTransformer(cfg, rngs=rngs)).bind(params)

The folder may hold a `CLIPVisionModelWithProjection`, a `CLIPVisionModel` (no projection: the
config gets projection_dim=0), or a whole `CLIPModel` (config is a CLIPConfig with
`vision_config`; the text tower, text projection and logit_scale are skipped, and the skip is
logged). Whether there is a projection is read from the checkpoint's keys
(`visual_projection.weight`). Tower keys may carry the `vision_model.` prefix or not
(transformers 5 saves a bare CLIPVisionModel without it, earlier versions and the
WithProjection / CLIPModel classes with it). A `preprocessor_config.json` beside the weights
supplies the pixel mean / std; without one, CLIP's are used. Anything that does not fit raises a
ValueError naming every unmapped, missing and mis-shaped key before any tensor is read; tensors
are streamed one at a time (as checkpointing/clip_convert.py, whose key helpers this reuses).
"""
import json
import logging
import os
import re

import ml_collections
from flax import nnx

from mgen_jax.checkpointing.clip_convert import index_tower_keys, transformers_key
from mgen_jax.checkpointing.state_dict_mapping import as_source, stream_params, target_shardings
from mgen_jax.checkpointing.transformers_folder import (load_transformers_config,
                                                        open_transformers_weights)
from mgen_jax.configs.vision import CLIP_IMAGE_MEAN, CLIP_IMAGE_STD
from mgen_jax.models.text.clip_text import ACTIVATIONS
from mgen_jax.models.vision.clip_vision import CLIPVisionTransformer

log = logging.getLogger(__name__)

PREFIX = "vision_model."
PROJECTION_KEY = "visual_projection.weight"  # outside the tower prefix in every class
PATCH_KEY = "embeddings.patch_embedding.weight"
# Keys of a full CLIPModel with no place in the vision tower.
_FULL_MODEL_EXTRA = re.compile(r"^(text_model\.|text_projection\.|logit_scale$)")
# A non-persistent buffer that old transformers versions saved; always arange, never a weight.
_BUFFERS = re.compile(r"^(vision_model\.)?embeddings\.position_ids$")

# ---------------------------------------------------------------------------------------------
# Config

# CLIPVisionConfig / CLIPConfig defaults, used for fields a config.json leaves out.
_DEFAULTS = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, num_channels=3, image_size=224, patch_size=32,
                 projection_dim=512, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def is_full_clip_config(config: dict) -> bool:
    return "vision_config" in config


def clip_vision_config_from_transformers(config: dict, *, with_projection: bool = True,
                                         preprocessor: dict | None = None
                                         ) -> ml_collections.ConfigDict:
    """Our CLIP vision config for a transformers config.json: a CLIPVisionConfig dict, or a full
    CLIPConfig dict (its `vision_config`, and its own projection_dim, which is the one the
    CLIPModel's visual projection has). `preprocessor` is a preprocessor_config.json dict whose
    image_mean / image_std replace CLIP's."""
    projection_dim = None
    if is_full_clip_config(config):
        projection_dim = config.get("projection_dim")
        config = config["vision_config"] or {}
    model_type = config.get("model_type", "clip_vision_model")
    if model_type not in ("clip_vision_model", "clip"):
        raise ValueError(f"CLIP vision config model_type={model_type!r}: expected "
                         "'clip_vision_model' (or a 'clip' CLIPConfig)")
    get = lambda k: config[k] if config.get(k) is not None else _DEFAULTS[k]
    act = get("hidden_act")
    if act not in ACTIVATIONS:
        raise ValueError(f"CLIP vision config hidden_act={act!r}: supported are {ACTIVATIONS}")
    preprocessor = preprocessor or {}
    cfg = ml_collections.ConfigDict(dict(
        hidden_size=int(get("hidden_size")), intermediate_size=int(get("intermediate_size")),
        num_layers=int(get("num_hidden_layers")), num_heads=int(get("num_attention_heads")),
        num_channels=int(get("num_channels")), image_size=int(get("image_size")),
        patch_size=int(get("patch_size")),
        projection_dim=int(projection_dim or get("projection_dim")) if with_projection else 0,
        hidden_act=act, layer_norm_eps=float(get("layer_norm_eps")),
        image_mean=tuple(float(m) for m in preprocessor.get("image_mean", CLIP_IMAGE_MEAN)),
        image_std=tuple(float(s) for s in preprocessor.get("image_std", CLIP_IMAGE_STD)),
        preset="transformers"))
    if cfg.hidden_size % cfg.num_heads:
        raise ValueError(f"CLIP vision config hidden_size={cfg.hidden_size} is not divisible by "
                         f"num_attention_heads={cfg.num_heads}")
    return cfg


# ---------------------------------------------------------------------------------------------
# Parameter mapping


def vision_key(path: tuple) -> str:
    """The transformers key (without `vision_model.`) of one of our parameters."""
    key = ".".join(str(p) for p in path)
    if key in ("class_embedding", "patch_embedding"):
        return PATCH_KEY if key == "patch_embedding" else "embeddings.class_embedding"
    # transformers spells the pre-LayerNorm `pre_layrnorm`; ours is spelled out.
    key = re.sub(r"^pre_layernorm\.", "pre_layrnorm.", key)
    return transformers_key(tuple(key.split(".")))


class _PatchKernelAsHWIO:
    """`source` with torch's Conv2d weight [out, in, kh, kw] of the patch embedding seen in our
    HWIO layout, so the shared streaming path (which knows Linear transposes only) checks and
    places it like any other tensor."""

    def __init__(self, source, key: str):
        self.source, self.key = source, key

    def keys(self):
        return self.source.keys()

    def __contains__(self, key) -> bool:
        return key in self.source

    def shape(self, key: str) -> tuple:
        shape = tuple(self.source.shape(key))
        if key == self.key and len(shape) == 4:
            return shape[2], shape[3], shape[1], shape[0]
        return shape

    def read(self, key: str):
        value = self.source.read(key)
        return value.transpose(2, 3, 1, 0) if key == self.key and value.ndim == 4 else value


def has_projection(state_dict) -> bool:
    return PROJECTION_KEY in as_source(state_dict)


def convert_clip_vision(state_dict, cfg, *, full_model: bool = False, mesh=None, rules=None,
                        shardings: dict | None = None) -> dict:
    """Params (nnx.to_pure_dict layout of CLIPVisionTransformer(cfg)) from a transformers state
    dict: a {key: array} dict or a LazyStateDict, streamed one tensor at a time into the
    shardings of `mesh` under `rules` or into `shardings` (a pure dict matching the params);
    default device without either. cfg.projection_dim > 0 requires `visual_projection.weight`,
    0 refuses it. With full_model=True (a CLIPModel checkpoint) text-tower / text_projection /
    logit_scale keys are skipped; otherwise every key must fill a parameter. Raises a ValueError
    listing every problem before reading a tensor."""
    source = as_source(state_dict)
    keys = index_tower_keys(source.keys(), PREFIX, buffers=_BUFFERS,
                            other_tower=_FULL_MODEL_EXTRA if full_model else None)
    if keys.skipped:
        log.info("CLIP vision: skipped %d keys of the full CLIPModel checkpoint (text tower, "
                 "text projection, logit_scale)", len(keys.skipped))

    def key_of(path):
        bare = vision_key(path)
        default = bare if bare == PROJECTION_KEY else PREFIX + bare
        return keys.original.get(bare, default)

    patch_key = keys.original.get(PATCH_KEY, PREFIX + PATCH_KEY)
    expected = (cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.patch_size)
    if patch_key in source and tuple(source.shape(patch_key)) != expected:
        # Said in torch's layout too, since the shared report below shows our HWIO view.
        keys.problems.append(f"{patch_key} (torch Conv2d [out, in, kh, kw]) has shape "
                             f"{tuple(source.shape(patch_key))}, the model expects {expected}")
    state = nnx.state(nnx.eval_shape(lambda: CLIPVisionTransformer(cfg, rngs=nnx.Rngs(0))))
    if shardings is None:
        shardings = target_shardings(state, mesh, rules)
    return stream_params("CLIP vision tower", state, _PatchKernelAsHWIO(source, patch_key),
                         key_of, shardings=shardings, skip=keys.buffers + keys.skipped,
                         problems=keys.problems)


def _preprocessor_config(path: str) -> dict | None:
    file = os.path.join(path, "preprocessor_config.json")
    if not os.path.isfile(file):
        return None
    with open(file) as f:
        return json.load(f)


def load_clip_vision(path: str, *, weights: str | None = None, mesh=None, rules=None,
                     shardings: dict | None = None) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) from a transformers CLIPVisionModel(WithProjection) or CLIPModel folder
    (`weights` names another weights file), streamed tensor by tensor into the shardings of
    `mesh` under `rules` or into `shardings` (default device without either). Bind with
    PureModel.create(...).bind(params)."""
    config = load_transformers_config(path)
    with open_transformers_weights(weights or path) as source:
        cfg = clip_vision_config_from_transformers(
            config, with_projection=has_projection(source),
            preprocessor=_preprocessor_config(path))
        params = convert_clip_vision(source, cfg, full_model=is_full_clip_config(config),
                                     mesh=mesh, rules=rules, shardings=shardings)
    return cfg, params
