"""The frozen text encoders of an experiment (cfg.text.encoders) as one NNX module.

    encoders = TextEncoders(cfg.text, rngs=...)
    hidden = encoders(ids, mask)          # {name: [B, L_i]} -> {name: [B, L_i, D_i]}

Params are {"encoders": {name: <that encoder's params>}}; checkpointing/text_encoder_checkpoint.py's
`text_encoder_params` fills each encoder from its checkpoint (a transformers folder or a
`mgen convert` output) or, without one, with random weights from cfg.text.init_seed (the
quickstart's frozen random features)."""
import functools

from flax import nnx

from mgen_jax.configs.registries import TEXT_ENCODER_KINDS
from mgen_jax.configs.text import encoder_names
from mgen_jax.models.pure_model import PureModel


def encoder_module(kind: str, model_cfg, rngs: nnx.Rngs) -> nnx.Module:
    """Our encoder of a kind (configs/registries.py:TEXT_ENCODER_KINDS) for an architecture
    config."""
    return TEXT_ENCODER_KINDS.load(kind)(model_cfg, rngs=rngs)


def encoder_model(kind: str, model_cfg) -> PureModel:
    """The same as an abstract PureModel (nothing allocated)."""
    return PureModel.create(functools.partial(encoder_module, kind, model_cfg))


class TextEncoders(nnx.Module):
    def __init__(self, text_cfg, *, rngs: nnx.Rngs):
        self.names = encoder_names(text_cfg)
        # Encoders that also return a pooled output (CLIP) give their hidden states only.
        self.pooled = {name: TEXT_ENCODER_KINDS.entry(text_cfg.encoders[name].kind)
                       .meta["pooled_output"] for name in self.names}
        self.encoders = nnx.Dict({name: encoder_module(text_cfg.encoders[name].kind,
                                                       text_cfg.encoders[name].model, rngs=rngs)
                                  for name in self.names})

    def __call__(self, ids: dict, mask: dict) -> dict:
        out = {}
        for name in self.names:
            hidden = self.encoders[name](ids[name], mask[name])
            out[name] = hidden[0] if self.pooled[name] else hidden
        return out
