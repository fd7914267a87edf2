"""Frozen text encoders as converted Orbax checkpoints: `mgen convert` once, restore many times.

Converting a transformers folder reads and re-lays-out every tensor; a training or precompute job
that restores our own Orbax checkpoint instead skips that work, needs no transformers folder, and
restores straight into its target shardings. A converted encoder is one directory:

    OUT/encoder.json   {"encoder": "ul2", "family": "t5", "config": {...our encoder config...},
                        "num_params": ..., "source": "/path/to/transformers/folder"}
    OUT/params/        Orbax (StandardCheckpointer) checkpoint of the params pure dict

    convert_text_encoder("ul2", "/ckpt/google-ul2", "/ckpt/ul2-mgen")        # mgen convert
    cfg, params = load_converted_text_encoder("/ckpt/ul2-mgen", mesh=mesh)   # into shards

Writing is atomic: everything goes to a sibling OUT.partial-* directory that is renamed to OUT
only when complete, so a killed conversion never leaves something that looks like a checkpoint.
Conversion runs on one host (it reads every tensor there anyway); restoring works on any mesh.
"""
import json
import os
import shutil
import tempfile

import jax
import ml_collections
import orbax.checkpoint as ocp

from mgen_jax.checkpointing.state_dict_mapping import target_shardings
from mgen_jax.checkpointing.transformers_folder import load_transformers_config
from mgen_jax.configs.registries import TEXT_ENCODER_KINDS, TEXT_ENCODERS
from mgen_jax.configs.text import encoder_names
from mgen_jax.models.builders import build_text_encoders
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.encoder_set import encoder_model
from mgen_jax.models.text.prompt_encoder import PromptEncoder
from mgen_jax.parallel.mesh import build_mesh

# `--encoder` names -> architecture family (kind): configs/registries.py:TEXT_ENCODERS. UL2,
# ByT5 and T5 are one T5 encoder implementation; MetaCLIP is the CLIP text tower.
ENCODER_FAMILIES = {name: TEXT_ENCODERS.load(name) for name in TEXT_ENCODERS}
# config.json model_type -> family, from each kind's registry entry.
_MODEL_TYPE_FAMILIES = {model_type: kind for kind in TEXT_ENCODER_KINDS
                        for model_type in TEXT_ENCODER_KINDS.entry(kind).meta["model_types"]}
CONFIG_FILE, PARAMS_DIR = "encoder.json", "params"


def _family(encoder: str) -> str:
    return TEXT_ENCODERS.load(encoder)  # unknown names fail, listing the known ones


def check_encoder_folder(encoder: str, config: dict, path: str) -> None:
    """Refuse a folder whose config.json is another kind of model than `encoder`: the family
    must match (model_type), and where config.json names a tokenizer_class, ByT5's byte
    tokenizer must go with --encoder=byt5 and only with it."""
    family = _family(encoder)
    model_type = config.get("model_type")
    folder_family = _MODEL_TYPE_FAMILIES.get(model_type)
    if folder_family is None:
        raise ValueError(f"--encoder={encoder}: {path}/config.json has model_type="
                         f"{model_type!r}, which is none of the text encoders "
                         f"(known model_types: {sorted(_MODEL_TYPE_FAMILIES)})")
    if folder_family != family:
        fits = sorted(e for e, f in ENCODER_FAMILIES.items() if f == folder_family)
        raise ValueError(f"--encoder={encoder} expects a {family.upper()} checkpoint, but "
                         f"{path}/config.json describes a {folder_family.upper()} model "
                         f"(model_type={model_type!r}); use --encoder={' or '.join(fits)}")
    tokenizer = config.get("tokenizer_class")
    if tokenizer and family == "t5" and (tokenizer == "ByT5Tokenizer") != (encoder == "byt5"):
        raise ValueError(f"--encoder={encoder}: {path}/config.json has tokenizer_class="
                         f"{tokenizer!r}; " + ("ByT5 checkpoints use ByT5Tokenizer"
                                               if encoder == "byt5" else
                                               "that is a ByT5 checkpoint, use --encoder=byt5"))


def load_text_encoder_folder(encoder: str, path: str, *, weights: str | None = None, mesh=None,
                             rules=None) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) of a transformers folder, checked against `encoder` and streamed into the
    shardings of `mesh` under `rules` (default device without a mesh)."""
    check_encoder_folder(encoder, load_transformers_config(path), path)
    load = TEXT_ENCODER_KINDS.load(_family(encoder), "load_folder")
    return load(path, weights=weights, mesh=mesh, rules=rules)


def text_encoder_model(family: str, cfg) -> PureModel:
    """Our (abstract) encoder of a family for a config: T5Encoder or CLIPTextTransformer."""
    return encoder_model(family, cfg)


def convert_text_encoder(encoder: str, checkpoint: str, out: str, *,
                         weights: str | None = None) -> dict:
    """Convert a transformers folder to OUT (encoder.json + Orbax params), atomically; returns
    the encoder.json contents. OUT must not exist yet."""
    out = os.path.abspath(out)
    if os.path.exists(out):
        raise FileExistsError(f"{out} already exists; remove it or choose another --out")
    # FSDP over this host's devices: no single device (a TPU chip) has to hold the whole model,
    # and Orbax writes each shard from where it lives.
    mesh = build_mesh({"data": 1, "fsdp": -1, "context": 1, "tensor": 1}, jax.local_devices())
    cfg, params = load_text_encoder_folder(encoder, checkpoint, weights=weights, mesh=mesh,
                                           rules="default")
    meta = {"encoder": encoder, "family": _family(encoder), "config": cfg.to_dict(),
            "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
            "source": os.path.abspath(checkpoint)}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    partial = tempfile.mkdtemp(prefix=os.path.basename(out) + ".partial-",
                               dir=os.path.dirname(out))
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(os.path.join(partial, PARAMS_DIR), params)
        checkpointer.wait_until_finished()
        with open(os.path.join(partial, CONFIG_FILE), "w") as f:
            json.dump(meta, f, indent=2)
        os.rename(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return meta


def read_converted_meta(out: str) -> dict:
    file = os.path.join(out, CONFIG_FILE)
    if not os.path.isfile(file):
        raise FileNotFoundError(f"{out} is not a converted text encoder: no {CONFIG_FILE} "
                                "(write one with `mgen convert`)")
    with open(file) as f:
        return json.load(f)


def load_converted_text_encoder(out: str, shardings: dict | None = None, *, mesh=None,
                                rules=None) -> tuple[ml_collections.ConfigDict, dict]:
    """(cfg, params) restored from `mgen convert`'s OUT straight into `shardings` (a pure dict of
    Shardings matching the params), or into the shardings of `mesh` under `rules` (logical axis
    names, as the converters place them), or onto the default device."""
    meta = read_converted_meta(out)
    cfg = ml_collections.ConfigDict(meta["config"])
    model = text_encoder_model(meta["family"], cfg)
    if shardings is None and mesh is not None:
        shardings = target_shardings(model.abstract_state, mesh, rules)
    abstract = model.abstract_params()
    if shardings is None:
        default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        shardings = jax.tree.map(lambda _: default, abstract)
    target = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          abstract, shardings)
    params = ocp.StandardCheckpointer().restore(os.path.abspath(os.path.join(out, PARAMS_DIR)),
                                                target)
    return cfg, params


def load_encoder_checkpoint(spec, path: str, shardings=None) -> dict:
    """One encoder's params from a transformers folder (config.json + weights) or a directory
    written by `mgen convert`; the checkpoint's architecture must equal spec.model."""
    if os.path.exists(os.path.join(path, "config.json")):
        load = TEXT_ENCODER_KINDS.load(spec.kind, "load_folder")
        loaded_cfg, params = load(path, shardings=shardings)  # streamed into its shards
    else:
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


def load_prompt_encoder(cfg, shardings=None) -> PromptEncoder:
    """The experiment's frozen text encoders with their weights (checkpoints, or random from
    text.init_seed), ready to encode prompts; params placed in `shardings` (default device)."""
    model = build_text_encoders(cfg)
    return PromptEncoder(cfg, model, text_encoder_params(cfg.text, model, shardings))
