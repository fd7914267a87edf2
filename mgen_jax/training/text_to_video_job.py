"""The text-to-video job behind `mgen train`: data -> TAE -> latents -> DiT -> evaluation.

Every phase checkpoints under <workdir>/checkpoints/<phase> and is skipped when its final
checkpoint exists, so re-running the same command after a crash resumes where it stopped."""
import json
import os

import jax
import ml_collections
import numpy as np

from data_pipelines.grain_pipeline import make_train_iterator
from data_pipelines.precompute_latents import decode_latent_record, precompute_latents
from data_pipelines.precompute_text import (TextCacheReader, load_null_embeddings,
                                            precompute_text)
from data_pipelines.shapes_writer import write_shapes_dataset
from mgen_jax.checkpointing.manager import PhaseCheckpointer
from mgen_jax.configs.text import text_shapes
from mgen_jax.inference.prompt_encoder import PromptEncoder, text_fingerprint
from mgen_jax.models.builders import (autoencoder_params, build_dit, build_tae,
                                      build_tae_trainable, build_text_encoders)
from mgen_jax.models.perceptual.lpips_convert import (load_lpips, lpips_model,
                                                      parse_lpips_checkpoint)
from mgen_jax.models.tae.video_range import video_to_float
from mgen_jax.models.text.encoder_set import text_encoder_params
from mgen_jax.models.text.text_inputs import token_fields, tokenize_prompts
from mgen_jax.parallel.logical_rules import rules_from_preset
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.dit_step import (encoder_dropout_rates, make_dit_train_step,
                                        make_dit_train_step_on_embeddings)
from mgen_jax.training.joint_image_video import joint_image_video_steps
from mgen_jax.training.loop import run_training
from mgen_jax.training.metrics import MetricsWriter
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.sharded_training import (abstract_train_state, batch_shardings,
                                                init_train_state, jit_train_step,
                                                to_device_batch, train_state_shardings)
from mgen_jax.training.tae_gan_step import make_tae_gan_train_step
from mgen_jax.training.tae_step import make_tae_train_step

CONFIG_FILE = "config.json"


def save_or_check_config(cfg: ml_collections.ConfigDict, workdir: str) -> None:
    """A workdir belongs to one config: resuming with a different one is refused."""
    path = os.path.join(workdir, CONFIG_FILE)
    text = cfg.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != json.loads(text):
            diff = sorted(k for k in set(old) | set(json.loads(text))
                          if old.get(k) != json.loads(text).get(k))
            raise ValueError(f"{workdir} was created with a different config (differs in "
                             f"{diff}); use a new --workdir")
        return
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} holds no {CONFIG_FILE}: not an mgen training workdir")
    with open(path) as f:
        return ml_collections.ConfigDict(_lists_to_tuples(json.load(f)))


def _lists_to_tuples(d):
    if isinstance(d, dict):
        return {k: _lists_to_tuples(v) for k, v in d.items()}
    return tuple(d) if isinstance(d, list) else d


class _Context:
    def __init__(self, cfg, workdir, show_progress):
        self.cfg, self.workdir, self.show_progress = cfg, workdir, show_progress
        self.mesh = build_mesh(cfg.mesh)
        self.rules = rules_from_preset(cfg.mesh.rules)
        self.key = jax.random.key(cfg.seed)
        self.data_dir = cfg.data.dir or os.path.join(workdir, "data")

    def checkpointer(self, phase, keep):
        return PhaseCheckpointer(os.path.join(self.workdir, "checkpoints", phase), keep=keep)

    def iterator(self, data_dir, batch_size, seed, decode=None):
        local = batch_size // jax.process_count()
        kwargs = {} if decode is None else {"decode": decode}
        return make_train_iterator(data_dir, batch_size=local, seed=seed,
                                   process_index=jax.process_index(),
                                   process_count=jax.process_count(), **kwargs)


PHASE_SEEDS = {"tae": 1, "dit": 2}


def _train_phase(ctx, *, phase, model, opt_cfg, make_step, iterator, example_batch,
                 frozen=None, frozen_shardings=None, meta=None, compile_steps=None):
    """Restore-or-init, then train one model to opt_cfg.steps; returns its TrainState.

    compile_steps(step_fn, jit) -> callable step, for phases that alternate several compiled
    programs (the TAE's image and video steps); default: jit(step_fn)."""
    optimizer = make_optimizer(opt_cfg)
    state_sh = train_state_shardings(model, optimizer, ctx.mesh, ctx.rules)
    ckpt = ctx.checkpointer(phase, opt_cfg.keep_checkpoints)
    latest = ckpt.latest_step()
    if latest is not None:
        abstract_frozen = None
        if frozen is not None:
            abstract_frozen = jax.tree.map(
                lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), frozen,
                frozen_shardings)
        state, restored_frozen, _ = ckpt.restore(
            latest, abstract_train_state(model, optimizer, state_sh),
            abstract_frozen=abstract_frozen, iterator=iterator)
        frozen = restored_frozen if frozen is not None else None
        print(f"[{phase}] resumed from step {latest}")
    else:
        init_key = jax.random.fold_in(jax.random.fold_in(ctx.key, PHASE_SEEDS[phase]), 0)
        state = init_train_state(model, optimizer, init_key, state_sh)
    if int(jax.device_get(state.step)) >= opt_cfg.steps:
        return state, frozen
    batch_sh = batch_shardings(ctx.mesh, ctx.rules, example_batch)
    extra = () if frozen is None else (frozen,)
    def jit(step_fn):
        return jit_train_step(step_fn, ctx.mesh, ctx.rules, state_sh, batch_sh,
                              () if frozen is None else (frozen_shardings,))

    step_fn = make_step(optimizer)
    jitted = jit(step_fn) if compile_steps is None else compile_steps(step_fn, jit)
    writer = MetricsWriter(ctx.workdir, phase)
    state = run_training(
        phase=phase, step_fn=jitted, state=state, num_steps=opt_cfg.steps, iterator=iterator,
        to_device=lambda b: to_device_batch(b, batch_sh),
        key=jax.random.fold_in(jax.random.fold_in(ctx.key, PHASE_SEEDS[phase]), 1),
        checkpointer=ckpt, writer=writer, log_every=opt_cfg.log_every,
        checkpoint_every=opt_cfg.checkpoint_every, extra_args=extra, frozen=frozen, meta=meta,
        show_progress=ctx.show_progress)
    writer.close()
    return state, frozen


def train_tae(ctx):
    """The TAE phase: joint image/video batches; loss terms, GAN and LPIPS as in cfg.tae.
    Returns the TrainState (params of the autoencoder, or of the autoencoder + discriminator
    pair when the GAN is on: see autoencoder_params)."""
    cfg = ctx.cfg
    t = cfg.tae
    model = build_tae_trainable(cfg)
    it = ctx.iterator(ctx.data_dir, cfg.tae_train.batch_size, cfg.data.seed + 1)
    example = {"video": np.zeros((cfg.tae_train.batch_size, cfg.data.frames, cfg.data.height,
                                  cfg.data.width, 3), np.uint8)}
    lpips, frozen, frozen_sh = None, None, None
    if t.perceptual_weight > 0:  # the frozen loss network travels like the DiT's text encoder
        lpips = lpips_model()
        frozen_sh = jax.tree.map(lambda _: replicated(ctx.mesh), lpips.abstract_params())
        frozen = jax.device_put(load_lpips(*parse_lpips_checkpoint(t.lpips_checkpoint)),
                                frozen_sh)
    terms = dict(kl_weight=t.kl_weight, mse_weight=t.mse_weight, l1_weight=t.l1_weight,
                 opl_weight=t.opl_weight, opl_r=t.opl_r, perceptual_weight=t.perceptual_weight,
                 lpips=lpips)

    def make_step(opt):
        if t.disc_weight > 0:
            return make_tae_gan_train_step(model, opt, disc_weight=t.disc_weight,
                                           disc_start=t.disc_start, **terms)
        return make_tae_train_step(model, opt, **terms)

    state, _ = _train_phase(
        ctx, phase="tae", model=model, opt_cfg=cfg.tae_train, iterator=it, example_batch=example,
        frozen=frozen, frozen_shardings=frozen_sh, make_step=make_step,
        compile_steps=lambda step, jit: joint_image_video_steps(
            step, jit, image_batches=t.image_batches, video_batches=t.video_batches,
            images_per_clip=t.images_per_clip),
        meta={"params": model.num_params()})
    return state


def text_cache_dir(workdir: str) -> str:
    return os.path.join(workdir, "text_cache")


def precompute_text_cache(cfg, data_dir: str, cache_dir: str, mesh=None) -> dict:
    """Encode data_dir's captions with cfg's frozen encoders into cache_dir (this process's
    shards); returns its manifest part. `mgen data precompute-text` and text.precompute=True."""
    sh = None
    if mesh is not None:
        sh = jax.tree.map(lambda _: replicated(mesh), build_text_encoders(cfg).abstract_params())
    encoder = PromptEncoder(cfg, shardings=sh)
    return precompute_text(data_dir, cache_dir, encode=encoder.encode, batch_size=32,
                           fingerprint=text_fingerprint(cfg), process_index=jax.process_index(),
                           process_count=jax.process_count())


def encode_latents(ctx, tae_params, tae_step: int) -> dict:
    """Latent shards of the dataset; their text fields are token ids, or cached embeddings when
    cfg.text.precompute (the text cache is built first)."""
    cfg = ctx.cfg
    tae = build_tae(cfg)

    @jax.jit
    def encode(params, video):
        return tae.bind(params).encode(video_to_float(video))

    if cfg.text.precompute:
        cache = text_cache_dir(ctx.workdir)
        precompute_text_cache(cfg, ctx.data_dir, cache, ctx.mesh)
        text_fields = TextCacheReader(cache).fields
    else:
        text_fields = lambda caps, shard, start: token_fields(
            tokenize_prompts(cfg.text, caps, fps=cfg.data.fps))
    return precompute_latents(
        ctx.data_dir, os.path.join(ctx.workdir, "latents"),
        encode=lambda v: encode(tae_params, v), text_fields=text_fields, batch_size=32,
        fingerprint={"tae_step": tae_step, "text": text_fingerprint(cfg),
                     "precomputed_text": bool(cfg.text.precompute)},
        process_index=jax.process_index(), process_count=jax.process_count())


def text_encoders_and_params(cfg, mesh):
    """The frozen encoders (PureModel) and their params, replicated on the mesh."""
    text_encoders = build_text_encoders(cfg)
    text_sh = jax.tree.map(lambda _: replicated(mesh), text_encoders.abstract_params())
    return text_encoders, text_encoder_params(cfg.text, text_encoders, text_sh), text_sh


def train_dit(ctx, latents_manifest: dict):
    """The DiT phase. Prompts are encoded inside the step by the frozen encoders (saved with the
    checkpoint), or read as cached embeddings when cfg.text.precompute."""
    cfg = ctx.cfg
    dit = build_dit(cfg)
    latent_dir = os.path.join(ctx.workdir, "latents")
    it = ctx.iterator(latent_dir, cfg.dit_train.batch_size, cfg.data.seed + 2,
                      decode=decode_latent_record)
    b = cfg.dit_train.batch_size
    latent_shape = (b,) + tuple(latents_manifest["latent_shape"])
    example = {"latent_mean": np.zeros(latent_shape, np.float32),
               "latent_logvar": np.zeros(latent_shape, np.float32)}
    shift, scale = latents_manifest["latent_shift"], latents_manifest["latent_scale"]
    flow = dict(flow_cfg=cfg.flow, latent_shift=shift, latent_scale=scale,
                encoder_dropout=encoder_dropout_rates(cfg.text))
    meta = {"params": dit.num_params(), "latent_shift": shift, "latent_scale": scale}
    if cfg.text.precompute:
        for name, (length, dim) in text_shapes(cfg.text).items():
            example[f"text.{name}"] = np.zeros((b, length, dim), np.float32)
            example[f"text_mask.{name}"] = np.zeros((b, length), bool)
        null_text, null_mask = load_null_embeddings(text_cache_dir(ctx.workdir))
        state, _ = _train_phase(
            ctx, phase="dit", model=dit, opt_cfg=cfg.dit_train, iterator=it,
            example_batch=example, meta=meta,
            make_step=lambda opt: make_dit_train_step_on_embeddings(
                dit, opt, null_text=null_text, null_mask=null_mask, **flow))
        return state, None
    text_encoders, text_params, text_sh = text_encoders_and_params(cfg, ctx.mesh)
    for name, (length, _) in text_shapes(cfg.text).items():
        example[f"ids.{name}"] = np.zeros((b, length), np.int32)
        example[f"mask.{name}"] = np.zeros((b, length), np.int32)
    empty = tokenize_prompts(cfg.text, [""])
    state, text_params = _train_phase(
        ctx, phase="dit", model=dit, opt_cfg=cfg.dit_train, iterator=it, example_batch=example,
        frozen=text_params, frozen_shardings=text_sh, meta=meta,
        make_step=lambda opt: make_dit_train_step(
            dit, text_encoders, opt, empty_tokens={n: {k: v[0] for k, v in t.items()}
                                                   for n, t in empty.items()}, **flow))
    return state, text_params


def prepare_workdir(cfg: ml_collections.ConfigDict, workdir: str, show_progress: bool):
    """Claim the workdir for this config and write the Shapes data (skipped when present)."""
    os.makedirs(workdir, exist_ok=True)
    save_or_check_config(cfg, workdir)
    ctx = _Context(cfg, workdir, show_progress)
    d = cfg.data
    write_shapes_dataset(ctx.data_dir, num_clips=d.num_clips, num_shards=d.num_shards,
                         frames=d.frames, height=d.height, width=d.width, seed=d.seed)
    return ctx


def run_text_to_video(cfg: ml_collections.ConfigDict, workdir: str, *,
                      show_progress: bool = True, evaluate: bool = True) -> dict | None:
    ctx = prepare_workdir(cfg, workdir, show_progress)
    tae_state = train_tae(ctx)
    manifest = encode_latents(ctx, autoencoder_params(cfg, tae_state.params),
                              int(jax.device_get(tae_state.step)))
    train_dit(ctx, manifest)
    if not evaluate:
        return None
    from mgen_jax.evaluation.heldout import evaluate_workdir
    return evaluate_workdir(workdir)
