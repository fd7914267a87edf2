"""The audio DiT phase of the video_to_audio job: flow matching on the precomputed DAC-VAE
latents (training/precompute_phase.py encode_audio_latents), conditioned on each clip's per-frame
visual features and its cached text embeddings, with masked audio prediction (random context for
extension and infilling) and dropout of text and video for classifier-free guidance."""
import numpy as np

from data_pipelines.precompute_latents import decode_latent_record
from data_pipelines.precompute_text import load_null_embeddings
from mgen_jax.configs.text import text_shapes
from mgen_jax.models.builders import build_audio_dit
from mgen_jax.models.tae.latent_scaling import normalize_latents
from mgen_jax.models.vision.clip_vision import video_feature_dim
from mgen_jax.parallel.distributed import is_coordinator
from mgen_jax.training.audio_dit_step import make_audio_dit_train_step
from mgen_jax.training.dit_step import encoder_dropout_rates
from mgen_jax.training.phase_runner import JobContext, train_phase
from mgen_jax.workdir import audio_latents_dir, text_cache_dir, write_model_facts


def audio_example_batch(cfg, latents_manifest: dict, batch_size: int) -> dict:
    """Zeros shaped like one global batch of audio latent records (what the step reads)."""
    latent_shape = (batch_size, *latents_manifest["latent_shape"])
    example = {"latent_mean": np.zeros(latent_shape, np.float32),
               "video_features": np.zeros((batch_size, cfg.data.frames,
                                           video_feature_dim(cfg.vision)), np.float32)}
    for name, (length, dim) in text_shapes(cfg.text).items():
        example[f"text.{name}"] = np.zeros((batch_size, length, dim), np.float32)
        example[f"text_mask.{name}"] = np.zeros((batch_size, length), bool)
    return example


def train_audio_dit(ctx: JobContext, latents_manifest: dict):
    """Returns the audio DiT's TrainState."""
    cfg, t = ctx.cfg, ctx.cfg.audio_dit_train
    if not cfg.text.precompute:
        raise ValueError("the video_to_audio job trains on cached text embeddings: set "
                         "text.precompute=True")
    if t.validate_every or t.sample_every:
        raise ValueError("audio_dit_train.validate_every / sample_every: the audio DiT phase "
                         "has no validation or sample hooks; set them to 0 (`mgen eval` "
                         "scores the trained model)")
    model = build_audio_dit(cfg)
    if is_coordinator():
        write_model_facts(ctx.workdir, "audio_dit", {
            "size": cfg.audio_dit.size, "width": cfg.audio_dit.width,
            "depth": cfg.audio_dit.depth, "params": int(model.num_params())})
    shift, scale = latents_manifest["latent_shift"], latents_manifest["latent_scale"]
    null_text, null_mask = load_null_embeddings(text_cache_dir(ctx.workdir))
    iterator = ctx.iterator(audio_latents_dir(ctx.workdir), t.batch_size, cfg.data.seed + 4,
                            decode=decode_latent_record)

    def make_step(optimizer):
        step = make_audio_dit_train_step(
            model, optimizer, flow_cfg=cfg.flow, masking_cfg=cfg.audio_dit.masking,
            null_text=null_text, null_mask=null_mask, video_dropout=cfg.audio_dit.video_dropout,
            encoder_dropout=encoder_dropout_rates(cfg.text))

        def on_records(state, batch, key):  # a latent record batch -> the step's inputs
            batch = dict(batch)
            batch["latents"] = normalize_latents(batch.pop("latent_mean"), shift, scale)
            batch["video"] = batch.pop("video_features")
            return step(state, batch, key)
        return on_records

    state, _ = train_phase(
        ctx, phase="audio_dit", model=model, train_cfg=t, optimizer_cfg=cfg.audio_dit_optimizer,
        make_step=make_step, iterator=iterator,
        example_batch=audio_example_batch(cfg, latents_manifest, t.batch_size),
        meta={"params": model.num_params(), "latent_shift": shift, "latent_scale": scale},
        counts={"tokens": lambda b: int(np.prod(np.shape(b["latent_mean"])[:2]))})
    return state
