"""The DiT phase: train the flow-matching transformer on precomputed latents. Prompts are encoded
inside the step by the frozen encoders (saved with the checkpoint), or read as cached embeddings
when cfg.text.precompute."""
import jax
import numpy as np

from data_pipelines.precompute_latents import decode_latent_record
from data_pipelines.precompute_text import load_null_embeddings
from mgen_jax.checkpointing.text_encoder_checkpoint import text_encoder_params
from mgen_jax.configs.text import text_shapes
from mgen_jax.models.builders import build_dit, build_text_encoders
from mgen_jax.models.text.text_inputs import tokenize_prompts
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.dit_step import (encoder_dropout_rates, make_dit_train_step,
                                        make_dit_train_step_on_embeddings)
from mgen_jax.training.phase_runner import JobContext, train_phase
from mgen_jax.workdir import latents_dir, text_cache_dir


def text_encoders_and_params(cfg, mesh):
    """The frozen encoders (PureModel), their params replicated on the mesh, and the shardings."""
    text_encoders = build_text_encoders(cfg)
    text_sh = jax.tree.map(lambda _: replicated(mesh), text_encoders.abstract_params())
    return text_encoders, text_encoder_params(cfg.text, text_encoders, text_sh), text_sh


def train_dit(ctx: JobContext, latents_manifest: dict):
    """Returns (TrainState, frozen text-encoder params or None when trained on the cache)."""
    cfg = ctx.cfg
    dit = build_dit(cfg)
    b = cfg.dit_train.batch_size
    it = ctx.iterator(latents_dir(ctx.workdir), b, cfg.data.seed + 2,
                      decode=decode_latent_record)
    latent_shape = (b,) + tuple(latents_manifest["latent_shape"])
    example = {"latent_mean": np.zeros(latent_shape, np.float32),
               "latent_logvar": np.zeros(latent_shape, np.float32)}
    shift, scale = latents_manifest["latent_shift"], latents_manifest["latent_scale"]
    flow = dict(flow_cfg=cfg.flow, latent_shift=shift, latent_scale=scale,
                encoder_dropout=encoder_dropout_rates(cfg.text))
    phase = dict(phase="dit", model=dit, train_cfg=cfg.dit_train,
                 optimizer_cfg=cfg.dit_optimizer, iterator=it,
                 meta={"params": dit.num_params(), "latent_shift": shift, "latent_scale": scale})
    if cfg.text.precompute:
        for name, (length, dim) in text_shapes(cfg.text).items():
            example[f"text.{name}"] = np.zeros((b, length, dim), np.float32)
            example[f"text_mask.{name}"] = np.zeros((b, length), bool)
        null_text, null_mask = load_null_embeddings(text_cache_dir(ctx.workdir))
        state, _ = train_phase(
            ctx, example_batch=example, **phase,
            make_step=lambda opt: make_dit_train_step_on_embeddings(
                dit, opt, null_text=null_text, null_mask=null_mask, **flow))
        return state, None
    text_encoders, text_params, text_sh = text_encoders_and_params(cfg, ctx.mesh)
    for name, (length, _) in text_shapes(cfg.text).items():
        example[f"ids.{name}"] = np.zeros((b, length), np.int32)
        example[f"mask.{name}"] = np.zeros((b, length), np.int32)
    empty = tokenize_prompts(cfg.text, [""])
    empty_tokens = {n: {k: v[0] for k, v in t.items()} for n, t in empty.items()}
    return train_phase(
        ctx, example_batch=example, frozen=text_params, frozen_shardings=text_sh, **phase,
        make_step=lambda opt: make_dit_train_step(dit, text_encoders, opt,
                                                  empty_tokens=empty_tokens, **flow))
