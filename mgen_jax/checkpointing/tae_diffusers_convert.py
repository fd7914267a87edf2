"""Initialise the TAE from a diffusers `AutoencoderKL` (the SD / LDM image VAE).

Our TAE is that VAE inflated to video, so a diffusers checkpoint fills every *spatial* parameter
one to one; the temporal convs and temporal attention keep their identity initialisation, so the
inflated model starts equal to the image VAE frame by frame (Movie Gen's recipe).

    model = init_tae_from_diffusers("path/to/vae")            # config.json + weights
    # or step by step, into a model built any way (eager, or tae_with_inflation_init):
    cfg = tae_config_from_diffusers(load_diffusers_config(path))
    convert_diffusers_vae(load_diffusers_state_dict(path), TemporalAutoencoder(cfg, rngs=...),
                          **quant_conv_flags(load_diffusers_config(path)))

Checkpoints are read with numpy only; torch is imported only for legacy `.bin` files.
"""
import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mgen_jax.checkpointing.state_dict_files import load_state_dict_file
from mgen_jax.configs.tae import tae_config
from mgen_jax.models.tae.autoencoder import TemporalAutoencoder

WEIGHTS_NAME = "diffusion_pytorch_model"

# ---------------------------------------------------------------------------------------------
# Config


def tae_config_from_diffusers(config: dict, base: ml_collections.ConfigDict | None = None
                              ) -> ml_collections.ConfigDict:
    """Our tae config for a diffusers AutoencoderKL config.json; training and temporal keys
    (kl_weight, temporal_downsamples, ...) come from `base` (default: the "paper" preset)."""
    def bad(field, why):
        value = config.get(field, "(diffusers default)")
        return ValueError(f"diffusers VAE config {field}={value!r}: {why}")

    if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise bad("_class_name", "only AutoencoderKL checkpoints can be converted")
    for field in ("in_channels", "out_channels"):
        if config.get(field, 3) != 3:
            raise bad(field, "the TAE works on RGB, 3 channels")
    if config.get("act_fn", "silu") not in ("silu", "swish"):  # diffusers: swish == silu
        raise bad("act_fn", "the TAE uses SiLU only")
    for field, kind in (("down_block_types", "DownEncoderBlock2D"),
                        ("up_block_types", "UpDecoderBlock2D")):
        if any(t != kind for t in config.get(field, ())):
            raise bad(field, f"every block must be {kind}")
    for field in ("latents_mean", "latents_std"):
        if config.get(field) is not None:
            raise bad(field, "per-channel latent statistics have no counterpart in our scalar "
                             "latent_shift / latent_scale")
    widths = [int(c) for c in config.get("block_out_channels", (64,))]
    ch = widths[0]
    if any(w % ch for w in widths):
        raise bad("block_out_channels", f"every width must be a multiple of the first ({ch}), "
                                        "as our ch * ch_mult levels are")
    groups = int(config.get("norm_num_groups", 32))
    if any(w % groups for w in widths):
        raise bad("norm_num_groups", f"must divide every width in {widths}")
    for field in ("down_block_types", "up_block_types"):
        if field in config and len(config[field]) != len(widths):
            raise bad(field, f"need one block per width in block_out_channels={widths}")

    cfg = ml_collections.ConfigDict((tae_config("paper") if base is None else base).to_dict())
    if not 0 <= cfg.temporal_downsamples <= len(widths) - 1:
        raise ValueError(
            f"temporal_downsamples={cfg.temporal_downsamples} (from the base config) needs that "
            f"many spatial downsampling levels, but this VAE has {len(widths) - 1}; pass a base "
            f"config with temporal_downsamples <= {len(widths) - 1}")
    shift = config.get("shift_factor")
    cfg.update(
        ch=ch,
        ch_mult=tuple(w // ch for w in widths),
        num_res_blocks=int(config.get("layers_per_block", 1)),
        z_channels=int(config.get("latent_channels", 4)),
        norm_groups=groups,
        attention=bool(config.get("mid_block_add_attention", True)),
        # Same convention as diffusers: z_dit = (z - shift_factor) * scaling_factor.
        latent_scale=float(config.get("scaling_factor", 0.18215)),
        latent_shift=0.0 if shift is None else float(shift),
        pixel_patch=(1, 1),  # the image VAE sees pixels directly
    )
    return cfg


def quant_conv_flags(config: dict) -> dict:
    """convert_diffusers_vae keywords for a config.json. VAEs without quant convs (SD3, Flux)
    are exact in our model with those 1x1 convs set to the identity."""
    return dict(use_quant_conv=bool(config.get("use_quant_conv", True)),
                use_post_quant_conv=bool(config.get("use_post_quant_conv", True)))


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def _vae_dir(path: str) -> str:
    """A VAE folder, or a whole pipeline folder whose VAE lives in vae/."""
    if not os.path.exists(os.path.join(path, "config.json")) and os.path.isdir(
            os.path.join(path, "vae")):
        return os.path.join(path, "vae")
    return path


def load_diffusers_config(path: str) -> dict:
    config_file = os.path.join(_vae_dir(path), "config.json")
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"no config.json in {path} (nor in {path}/vae)")
    with open(config_file) as f:
        return json.load(f)


def load_diffusers_state_dict(path: str) -> dict[str, np.ndarray]:
    """Flat {diffusers key: numpy array} from a VAE folder (safetensors preferred over .bin,
    single file over shards) or from one weights file."""
    if os.path.isfile(path):
        return load_state_dict_file(path)
    folder = _vae_dir(path)
    for name in (f"{WEIGHTS_NAME}.safetensors", f"{WEIGHTS_NAME}.safetensors.index.json",
                 f"{WEIGHTS_NAME}.bin", f"{WEIGHTS_NAME}.bin.index.json"):
        if os.path.isfile(os.path.join(folder, name)):
            return load_state_dict_file(os.path.join(folder, name))
    found = sorted(os.listdir(folder)) if os.path.isdir(folder) else "(not a folder)"
    raise FileNotFoundError(f"no {WEIGHTS_NAME}.safetensors/.bin (or sharded index) in {folder}; "
                            f"found {found}. Pass a variant file (e.g. *.fp16.safetensors) "
                            "directly.")


# ---------------------------------------------------------------------------------------------
# Parameter mapping

# Our parameter path (dotted) -> diffusers key, applied in order. Our Conv25D wraps the diffusers
# conv as `.spatial`; its `.temporal` partner has no diffusers counterpart and is never mapped.
_RENAMES = [
    (r"^encoder\.quant_conv\.", "quant_conv."),
    (r"^decoder\.post_quant_conv\.", "post_quant_conv."),
    (r"^encoder\.levels\.(\d+)\.blocks\.", r"encoder.down_blocks.\1.resnets."),
    (r"^encoder\.levels\.(\d+)\.down\.spatial\.", r"encoder.down_blocks.\1.downsamplers.0.conv."),
    (r"^decoder\.levels\.(\d+)\.blocks\.", r"decoder.up_blocks.\1.resnets."),
    (r"^decoder\.levels\.(\d+)\.up\.spatial\.", r"decoder.up_blocks.\1.upsamplers.0.conv."),
    (r"\.mid_block1\.", ".mid_block.resnets.0."),
    (r"\.mid_block2\.", ".mid_block.resnets.1."),
    (r"\.mid_attn\.spatial\.norm\.", ".mid_block.attentions.0.group_norm."),
    (r"\.mid_attn\.spatial\.q\.", ".mid_block.attentions.0.to_q."),
    (r"\.mid_attn\.spatial\.k\.", ".mid_block.attentions.0.to_k."),
    (r"\.mid_attn\.spatial\.v\.", ".mid_block.attentions.0.to_v."),
    (r"\.mid_attn\.spatial\.proj\.", ".mid_block.attentions.0.to_out.0."),
    (r"\.shortcut\.", ".conv_shortcut."),
    (r"\.norm_out\.", ".conv_norm_out."),
    (r"\.spatial\.", "."),
    (r"\.(kernel|scale)$", ".weight"),
]

# Attention names of checkpoints saved before diffusers' Attention refactor.
_LEGACY_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_LEGACY_RE = re.compile(r"^(.*\.attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$")

_QUANT_PATHS = {"use_quant_conv": ("encoder", "quant_conv"),
                "use_post_quant_conv": ("decoder", "post_quant_conv")}


def diffusers_key(path: tuple) -> str:
    """The diffusers state-dict key of one of our spatial parameters."""
    key = ".".join(str(p) for p in path)
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def _modern_key(key: str) -> str:
    m = _LEGACY_RE.match(key)
    return f"{m[1]}.{_LEGACY_ATTENTION[m[2]]}.{m[3]}" if m else key


def _to_our_layout(value: np.ndarray, target_ndim: int) -> np.ndarray:
    """PyTorch layout -> ours, chosen by the shape of the parameter being filled."""
    if target_ndim == 4 and value.ndim == 4:  # conv OIHW -> HWIO
        return value.transpose(2, 3, 1, 0)
    if target_ndim == 2 and value.ndim == 4 and value.shape[2:] == (1, 1):
        value = value[:, :, 0, 0]  # old checkpoints store attention projections as 1x1 convs
    if target_ndim == 2 and value.ndim == 2:  # Linear [out, in] -> [in, out]
        return value.T
    return value  # norms and biases; a rank mismatch is reported as a shape error


def _identity_1x1(shape: tuple, dtype) -> np.ndarray:
    return np.eye(shape[2], shape[3], dtype=dtype).reshape(shape)


def convert_diffusers_vae(state_dict: dict, model: TemporalAutoencoder, *,
                          use_quant_conv: bool = True, use_post_quant_conv: bool = True) -> None:
    """Fill every spatial parameter of `model` (image or inflated) from a diffusers AutoencoderKL
    state dict, in place. Temporal parameters are left as they are (identity at init).

    Nothing is written unless the whole checkpoint fits: a ValueError lists every checkpoint key
    with no place in the model, every spatial parameter the checkpoint does not fill, and every
    shape mismatch. `use_quant_conv=False` / `use_post_quant_conv=False` (SD3, Flux VAEs) set
    those 1x1 convs to the identity instead of expecting them in the checkpoint."""
    flags = dict(use_quant_conv=use_quant_conv, use_post_quant_conv=use_post_quant_conv)
    checkpoint, legacy_name = {}, {}
    duplicates = []
    for key, value in state_dict.items():
        modern = _modern_key(key)
        if modern in checkpoint:
            duplicates.append(f"{legacy_name[modern]} / {key}")
        checkpoint[modern], legacy_name[modern] = value, key

    params = nnx.to_flat_state(nnx.state(model, nnx.Param))
    new_values, missing, mismatched = {}, [], []
    for path, var in params:
        if "temporal" in path:  # inflation-only parameters: no diffusers counterpart
            continue
        target = var.get_value()
        identity_conv = any(not flags[flag] and path[:2] == prefix
                            for flag, prefix in _QUANT_PATHS.items())
        if identity_conv:
            new_values[path] = (_identity_1x1(target.shape, target.dtype) if path[-1] == "kernel"
                                else np.zeros(target.shape, target.dtype))
            continue
        key = diffusers_key(path)
        if key not in checkpoint:
            missing.append(f"{key} (our {'.'.join(map(str, path))}, shape {target.shape})")
            continue
        source = np.asarray(checkpoint.pop(key))
        value = _to_our_layout(source, target.ndim)
        if value.shape != target.shape:
            mismatched.append(f"{legacy_name[key]}: checkpoint {source.shape} -> "
                              f"{value.shape} in our layout, model expects {target.shape}")
            continue
        new_values[path] = value.astype(target.dtype)

    problems = []
    if duplicates:
        problems.append("keys given under both legacy and current names: " + ", ".join(duplicates))
    if checkpoint:
        problems.append("checkpoint keys with no place in the model: "
                        + ", ".join(sorted(legacy_name[k] for k in checkpoint)))
    if missing:
        problems.append("model parameters the checkpoint does not fill: " + ", ".join(missing))
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise ValueError("diffusers VAE checkpoint does not match the TAE:\n  "
                         + "\n  ".join(problems))

    updates = []
    for path, var in params:
        if path in new_values:
            old = var.get_value()
            # Keep the placement of a concrete parameter (it may be sharded over a mesh); an
            # abstract one (tae_with_inflation_init) lands on the default device.
            value = (jax.device_put(new_values[path], old.sharding)
                     if isinstance(old, jax.Array) else jnp.asarray(new_values[path]))
            var.set_value(value)
            updates.append((path, var))
    nnx.update(model, nnx.from_flat_state(updates))


def _is_inflation(path, _value) -> bool:
    return "temporal" in path


def tae_with_inflation_init(cfg: ml_collections.ConfigDict, *, temporal: bool = True,
                            seed: int = 0) -> TemporalAutoencoder:
    """A TAE whose inflation (temporal) parameters hold their initial values and whose spatial
    parameters are still abstract (shape/dtype only), waiting for convert_diffusers_vae.

    Initialising the spatial weights only to overwrite them is not free: every new conv shape
    compiles its own truncated-normal kernel (seconds each on CPU), and at SD-VAE size the random
    init is ~80M wasted values. Under jit, the unused spatial initialisers are dead code."""
    def make():
        return TemporalAutoencoder(cfg, temporal=temporal, rngs=nnx.Rngs(seed))

    model = nnx.eval_shape(make)
    if temporal:
        nnx.update(model, jax.jit(lambda: nnx.state(make(), _is_inflation))())
    return model


def _check_materialised(model: nnx.Module) -> None:
    abstract = [".".join(map(str, path)) for path, var in nnx.to_flat_state(nnx.state(model))
                if isinstance(var.get_value(), jax.ShapeDtypeStruct)]
    if abstract:
        raise RuntimeError(f"TAE variables left without values: {', '.join(abstract)}")


def init_tae_from_diffusers(path: str, cfg: ml_collections.ConfigDict | None = None, *,
                            temporal: bool = True, weights: str | None = None,
                            seed: int = 0) -> TemporalAutoencoder:
    """A TAE whose spatial weights come from the diffusers VAE folder `path` (config.json and
    weights; `weights` names another weights file). `cfg` defaults to the folder's config mapped
    by tae_config_from_diffusers; temporal layers start as the identity (`seed` draws the
    temporal attention's q/k/v, whose output projection starts at zero)."""
    config = load_diffusers_config(path)
    cfg = tae_config_from_diffusers(config) if cfg is None else cfg
    model = tae_with_inflation_init(cfg, temporal=temporal, seed=seed)
    convert_diffusers_vae(load_diffusers_state_dict(weights or path), model,
                          **quant_conv_flags(config))
    _check_materialised(model)
    return model
