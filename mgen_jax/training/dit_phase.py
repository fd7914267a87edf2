"""The DiT phase: train the flow-matching transformer on precomputed latents. Prompts are encoded
inside the step by the frozen encoders (saved with the checkpoint), or read as cached embeddings
when cfg.text.precompute. Logs tokens/s and MFU (analytic FLOPs), and at its intervals the held-out
validation loss at fixed t and sample videos (dit_train.validate_every, sample_every)."""
import functools

import grain
import jax
import numpy as np

from data_pipelines.precompute_latents import decode_latent_record
from data_pipelines.precompute_text import load_null_embeddings
from data_pipelines.shapes import canonical_caption, held_out_combos
from data_pipelines.shapes_writer import shard_paths
from mgen_jax.checkpointing.text_encoder_checkpoint import text_encoder_params
from mgen_jax.configs.text import text_shapes
from mgen_jax.models.builders import build_dit, build_text_encoders
from mgen_jax.models.dit.flops import dit_train_flops
from mgen_jax.models.text.text_inputs import tokenize_prompts
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.dit_step import (encoder_dropout_rates, make_dit_train_step,
                                        make_dit_train_step_on_embeddings)
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.optimizer import on_plateau, validation_plateau_update
from mgen_jax.training.phase_runner import JobContext, train_phase
from mgen_jax.training.sample_logging import SampleHook
from mgen_jax.training.sharded_training import to_device_batch
from mgen_jax.training.validation import (ValidationHook, make_dit_validation_loss,
                                          validation_noise_key)
from mgen_jax.parallel.distributed import is_coordinator
from mgen_jax.workdir import latents_dir, samples_dir, text_cache_dir, write_model_facts


def text_encoders_and_params(cfg, mesh):
    """The frozen encoders (PureModel), their params replicated on the mesh, and the shardings."""
    text_encoders = build_text_encoders(cfg)
    text_sh = jax.tree.map(lambda _: replicated(mesh), text_encoders.abstract_params())
    return text_encoders, text_encoder_params(cfg.text, text_encoders, text_sh), text_sh


def dit_counts(cfg) -> dict:
    """Tokens and model FLOPs of one host batch of latents (its own shape: buckets differ)."""
    pt, ph, pw = cfg.dit.patch_size

    def grid(batch):
        _, t, h, w, _ = np.shape(batch["latent_mean"])
        return t // pt, h // ph, w // pw

    @functools.lru_cache(maxsize=None)  # counted every step: once per batch shape suffices
    def flops(batch_size: int, tokens: tuple) -> float:
        return dit_train_flops(cfg, batch_size, tokens)["total"]

    return {"tokens": lambda b: len(b["latent_mean"]) * int(np.prod(grid(b))),
            "flops": lambda b: flops(len(b["latent_mean"]), grid(b))}


def dit_facts(cfg, params: int) -> dict:
    """Size, parameters and analytic train FLOPs per video token (text, conditioning and
    attention included; on the experiment's data shape) for model.json and sweep tables."""
    flops = dit_train_flops(cfg, batch_size=1)
    return {"size": cfg.dit.size, "width": cfg.dit.width, "depth": cfg.dit.depth,
            "params": int(params), "tokens_per_sample": flops["tokens_per_sample"],
            "train_flops_per_token": flops["total"] / flops["tokens_per_sample"]}


def sample_prompts(cfg, directory: str, count: int) -> list[str]:
    """Prompts of the samples logged while training: the held-out attribute combinations of a
    Shapes dataset (what evaluation scores), else the dataset's first captions."""
    if cfg.data.source == "shapes":
        return [canonical_caption(*c) for c in held_out_combos()][:count]
    source = grain.sources.ArrayRecordDataSource(shard_paths(directory))
    return [decode_latent_record(source[i])["caption"] for i in range(min(count, len(source)))]


def _hooks(ctx: JobContext, dit, tae_params, text_encoders, flow: dict):
    """make_hooks for train_phase: validation and sample hooks as dit_train asks."""
    cfg, t = ctx.cfg, ctx.cfg.dit_train
    directory = latents_dir(ctx.workdir)

    def make(batch_sh, frozen):
        hooks = []
        if t.validate_every:
            loss = make_dit_validation_loss(
                dit, flow_cfg=cfg.flow, latent_shift=flow["latent_shift"],
                latent_scale=flow["latent_scale"], t_values=t.validation_t,
                text_encoders=None if cfg.text.precompute else text_encoders)
            batches = [to_device_batch(b, batch_sh) for b in ctx.holdout_batches(
                directory, t.batch_size, t.validation_clips, decode_latent_record)]
            hooks.append(ValidationHook(
                loss, batches, every=t.validate_every, num_steps=t.steps,
                t_values=t.validation_t, mesh=ctx.mesh, rules=ctx.rules,
                key=validation_noise_key(), writer=MetricsWriter(ctx.workdir, "dit_val"),
                text_params=frozen, record_plateau=_validation_plateau(cfg)))
        if t.sample_every:
            if tae_params is None:
                raise ValueError("dit_train.sample_every needs the TAE's parameters: "
                                 "train_dit(..., tae_params=...)")
            text_params = frozen
            if text_params is None:  # trained on cached embeddings: the encoders the cache used
                _, text_params, _ = text_encoders_and_params(cfg, ctx.mesh)
            hooks.append(SampleHook(
                cfg, prompts=sample_prompts(cfg, directory, t.sample_count), every=t.sample_every,
                num_steps=t.steps, out_dir=samples_dir(ctx.workdir, "dit"),
                writer=MetricsWriter(ctx.workdir, "dit_samples"), tae_params=tae_params,
                text_params=text_params, latent_shift=flow["latent_shift"],
                latent_scale=flow["latent_scale"], mesh=ctx.mesh, rules=ctx.rules,
                seed=cfg.eval.seed))
        return hooks
    return make


def _validation_plateau(cfg):
    o = cfg.dit_optimizer
    if not (on_plateau(o) and o.plateau_on == "validation_loss"):
        return None
    return validation_plateau_update(o, cfg.dit_train.validate_every)


def train_dit(ctx: JobContext, latents_manifest: dict, tae_params=None):
    """Returns (TrainState, frozen text-encoder params or None when trained on the cache).
    tae_params: the trained TAE's, for the samples logged while training (sample_every)."""
    cfg = ctx.cfg
    dit = build_dit(cfg)
    if is_coordinator():
        write_model_facts(ctx.workdir, "dit", dit_facts(cfg, dit.num_params()))
    b = cfg.dit_train.batch_size
    it = ctx.iterator(latents_dir(ctx.workdir), b, cfg.data.seed + 2,
                      decode=decode_latent_record, holdout=cfg.dit_train.validation_clips)
    latent_shape = (b,) + tuple(latents_manifest["latent_shape"])
    example = {"latent_mean": np.zeros(latent_shape, np.float32),
               "latent_logvar": np.zeros(latent_shape, np.float32)}
    shift, scale = latents_manifest["latent_shift"], latents_manifest["latent_scale"]
    flow = dict(flow_cfg=cfg.flow, latent_shift=shift, latent_scale=scale,
                encoder_dropout=encoder_dropout_rates(cfg.text))
    text_encoders = text_params = text_sh = None
    if not cfg.text.precompute:
        text_encoders, text_params, text_sh = text_encoders_and_params(cfg, ctx.mesh)
    phase = dict(phase="dit", model=dit, train_cfg=cfg.dit_train,
                 optimizer_cfg=cfg.dit_optimizer, iterator=it,
                 meta={"params": dit.num_params(), "latent_shift": shift, "latent_scale": scale},
                 counts=dit_counts(cfg),
                 make_hooks=_hooks(ctx, dit, tae_params, text_encoders, flow))
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
    for name, (length, _) in text_shapes(cfg.text).items():
        example[f"ids.{name}"] = np.zeros((b, length), np.int32)
        example[f"mask.{name}"] = np.zeros((b, length), np.int32)
    empty = tokenize_prompts(cfg.text, [""])
    empty_tokens = {n: {k: v[0] for k, v in t.items()} for n, t in empty.items()}
    return train_phase(
        ctx, example_batch=example, frozen=text_params, frozen_shardings=text_sh, **phase,
        make_step=lambda opt: make_dit_train_step(dit, text_encoders, opt,
                                                  empty_tokens=empty_tokens, **flow))
