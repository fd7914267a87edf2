"""The frozen CLIP vision tower's parameters for a job: a transformers checkpoint
(vision.checkpoint, through checkpointing/clip_vision_convert.py) or random from
vision.init_seed (tiny experiments, like their random frozen text encoders)."""
import jax

from mgen_jax.checkpointing.clip_vision_convert import load_clip_vision
from mgen_jax.models.pure_model import PureModel

# The architecture keys a checkpoint must agree on with the experiment's vision config.
_ARCHITECTURE = ("hidden_size", "intermediate_size", "num_layers", "num_heads", "patch_size",
                 "image_size", "projection_dim", "hidden_act")


def vision_tower_params(vision_cfg, model: PureModel, shardings=None) -> dict:
    """Params of `model` (the PureModel of vision_cfg's tower) placed in `shardings`."""
    if not vision_cfg.checkpoint:
        return model.init(jax.random.key(vision_cfg.init_seed), shardings)
    loaded_cfg, params = load_clip_vision(vision_cfg.checkpoint, shardings=shardings)
    wrong = {k: (vision_cfg[k], loaded_cfg[k]) for k in _ARCHITECTURE
             if vision_cfg[k] != loaded_cfg[k]}
    if wrong:
        raise ValueError(f"vision.checkpoint={vision_cfg.checkpoint!r} does not match the "
                         "experiment's vision config (key: config vs checkpoint): "
                         + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in wrong.items()))
    return params
