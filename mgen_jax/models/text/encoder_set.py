"""The frozen text encoders of an experiment (cfg.text.encoders) as one NNX module.

    encoders = TextEncoders(cfg.text, rngs=...)
    hidden = encoders(ids, mask)          # {name: [B, L_i]} -> {name: [B, L_i, D_i]}

Params are {"encoders": {name: <that encoder's params>}}; `text_encoder_params` fills each
encoder from its checkpoint (a transformers folder or a `mgen convert` output) or, without one,
with random weights from cfg.text.init_seed (the quickstart's frozen random features)."""
import functools
import os

import jax
from flax import nnx

from mgen_jax.configs.text import encoder_names
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.clip_text import CLIPTextTransformer
from mgen_jax.models.text.t5_encoder import T5Encoder


def encoder_module(kind: str, model_cfg, rngs: nnx.Rngs) -> nnx.Module:
    """Our encoder of a kind ('t5' or 'clip') for an architecture config."""
    if kind == "t5":
        return T5Encoder(model_cfg, rngs=rngs)
    if kind == "clip":
        return CLIPTextTransformer(model_cfg, rngs=rngs)
    raise ValueError(f"text encoder kind {kind!r} unknown; choose 't5' or 'clip'")


def encoder_model(kind: str, model_cfg) -> PureModel:
    """The same as an abstract PureModel (nothing allocated)."""
    return PureModel.create(functools.partial(encoder_module, kind, model_cfg))


class TextEncoders(nnx.Module):
    def __init__(self, text_cfg, *, rngs: nnx.Rngs):
        self.names = encoder_names(text_cfg)
        self.kinds = {name: text_cfg.encoders[name].kind for name in self.names}
        self.encoders = nnx.Dict({name: encoder_module(text_cfg.encoders[name].kind,
                                                       text_cfg.encoders[name].model, rngs=rngs)
                                  for name in self.names})

    def __call__(self, ids: dict, mask: dict) -> dict:
        out = {}
        for name in self.names:
            hidden = self.encoders[name](ids[name], mask[name])
            out[name] = hidden[0] if self.kinds[name] == "clip" else hidden  # drop CLIP's pooled
        return out


def load_encoder_checkpoint(spec, path: str, shardings=None) -> dict:
    """One encoder's params from a transformers folder (config.json + weights) or a directory
    written by `mgen convert`; the checkpoint's architecture must equal spec.model."""
    if os.path.exists(os.path.join(path, "config.json")):
        if spec.kind == "t5":
            from mgen_jax.models.text.t5_convert import load_t5_encoder as load
        else:
            from mgen_jax.models.text.clip_convert import load_clip_text as load
        loaded_cfg, params = load(path, shardings=shardings)  # streamed into its shards
    else:
        from mgen_jax.checkpointing.text_encoder_checkpoint import load_converted_text_encoder
        loaded_cfg, params = load_converted_text_encoder(path, shardings)
    mismatched = sorted(k for k in spec.model.keys()
                        if k in loaded_cfg and loaded_cfg[k] != spec.model[k])
    if mismatched:
        raise ValueError(f"text checkpoint {path}: architecture differs from the config in "
                         + ", ".join(f"{k} (checkpoint {loaded_cfg[k]!r}, config "
                                     f"{spec.model[k]!r})" for k in mismatched))
    return params


def text_encoder_params(text_cfg, model, shardings) -> dict:
    """Params of TextEncoders(text_cfg) (`model` its PureModel) placed in `shardings`: random from
    text.init_seed, then every encoder with a checkpoint replaced by its loaded weights."""
    params = model.init(jax.random.key(text_cfg.init_seed), shardings)
    for name in encoder_names(text_cfg):
        spec = text_cfg.encoders[name]
        if spec.checkpoint:
            params["encoders"][name] = load_encoder_checkpoint(
                spec, spec.checkpoint, shardings["encoders"][name])
    return params
