"""The precompute phase between the TAE and the DiT: every clip encoded once into TAE latents
(with its caption's token ids, or its cached text embeddings when cfg.text.precompute), so the
DiT phase never runs the TAE encoder; for the audio job, every soundtrack into DAC-VAE latents
with its per-frame visual features. Also the text cache behind `mgen data precompute-text`."""
from typing import Callable

import jax

from data_pipelines.precompute_latents import (finalize_latents_manifest, precompute_latents,
                                               remove_stale_latents)
from data_pipelines.precompute_text import TextCacheReader, precompute_text
from data_pipelines.video_datasets import load_video_manifest
from mgen_jax.checkpointing.text_encoder_checkpoint import load_prompt_encoder
from mgen_jax.configs.text import text_fingerprint
from mgen_jax.models.builders import (build_clip_vision, build_dac_vae, build_tae,
                                      build_text_encoders)
from mgen_jax.models.tae.video_range import video_to_float
from mgen_jax.models.text.text_inputs import token_fields, tokenize_prompts
from mgen_jax.models.vision.clip_vision import frame_features
from mgen_jax.parallel.distributed import barrier
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.phase_runner import JobContext
from mgen_jax.workdir import audio_latents_dir, latents_dir, text_cache_dir


def precompute_text_cache(cfg, data_dir: str, cache_dir: str, mesh=None) -> dict:
    """Encode data_dir's captions with cfg's frozen encoders into cache_dir (this process's
    shards); returns its manifest part. `mgen data precompute-text` and text.precompute=True."""
    shardings = None
    if mesh is not None:
        shardings = jax.tree.map(lambda _: replicated(mesh),
                                 build_text_encoders(cfg).abstract_params())
    encoder = load_prompt_encoder(cfg, shardings)
    return precompute_text(data_dir, cache_dir, encode=encoder.encode, batch_size=32,
                           fingerprint=text_fingerprint(cfg), process_index=jax.process_index(),
                           process_count=jax.process_count())


def latent_encoder(cfg, tae_params) -> Callable:
    """uint8 videos [B, T, H, W, 3] -> (mean, logvar) float32, through the TAE's tiled encoder
    (cfg.tae.tiling: 32-frame tiles without overlap, optional spatial tiles): memory stays bounded
    however long the clips (768 px x 256 frames). Jitted: one compile per batch shape."""
    tae = build_tae(cfg)
    encode = jax.jit(lambda params, video: tae.bind(params).encode_tiled(video_to_float(video)))
    return lambda video: encode(tae_params, video)


def encode_latents(ctx: JobContext, tae_params, tae_step: int) -> dict:
    """Latent shards of the dataset (returns their merged manifest); their text fields are token
    ids, or cached embeddings when cfg.text.precompute (the text cache is built first)."""
    return _encode_dataset(ctx, latents_dir(ctx.workdir), encode=latent_encoder(ctx.cfg, tae_params),
                           fingerprint={"tae_step": tae_step})


def audio_latent_encoder(cfg, dac_params) -> Callable:
    """float32 audio [B, N] -> (mean, logvar) [B, t, C] of the DAC-VAE's posterior (25 Hz)."""
    dac = build_dac_vae(cfg)
    encode = jax.jit(lambda params, audio: dac.bind(params).encode(audio[..., None]))
    return lambda audio: encode(dac_params, audio)


def video_feature_encoder(cfg, vision_params) -> Callable:
    """uint8 videos [B, T, H, W, 3] -> {"video_features": [B, T, D]}: the frozen CLIP tower's
    per-frame features (vision.features), the audio DiT's visual conditioning."""
    tower = build_clip_vision(cfg)
    run = jax.jit(lambda params, video: frame_features(tower.bind(params), video,
                                                       cfg.vision.features))
    return lambda video: {"video_features": run(vision_params, video)}


def encode_audio_latents(ctx: JobContext, dac_params, dac_step: int, vision_params) -> dict:
    """The audio job's precompute: every clip's soundtrack as DAC-VAE latents, with its per-frame
    visual features and its caption's text fields (returns the merged manifest)."""
    return _encode_dataset(
        ctx, audio_latents_dir(ctx.workdir), encode=audio_latent_encoder(ctx.cfg, dac_params),
        fingerprint={"dac_vae_step": dac_step, "vision": ctx.cfg.vision.to_dict()},
        input_field="audio", features=video_feature_encoder(ctx.cfg, vision_params))


def _encode_dataset(ctx: JobContext, out_dir: str, *, encode: Callable, fingerprint: dict,
                    input_field: str = "video", features: Callable | None = None) -> dict:
    """precompute_latents over the job's dataset, text fields as cfg.text says.

    Multi-process: process 0 removes a stale output before anyone writes (a barrier after it),
    each process writes its shards, and after a second barrier every process merges the same
    normalisation from all shards' statistics (only process 0 writes manifest.json)."""
    cfg = ctx.cfg
    if cfg.text.precompute:
        cache = text_cache_dir(ctx.workdir)
        precompute_text_cache(cfg, ctx.data_dir, cache, ctx.mesh)
        reader = TextCacheReader(cache)

        def text_fields(captions, shard, start, fps):  # the cache's prompts carry their fps
            return reader.fields(captions, shard, start)
    else:
        def text_fields(captions, shard, start, fps):  # a built dataset's clips keep their fps
            return token_fields(tokenize_prompts(cfg.text, captions,
                                                 fps=cfg.data.fps if fps is None else fps))
    fingerprint = dict(fingerprint, text=text_fingerprint(cfg),
                       precomputed_text=bool(cfg.text.precompute))
    multi = jax.process_count() > 1
    if multi:
        if jax.process_index() == 0:
            remove_stale_latents(ctx.data_dir, out_dir, fingerprint)
        barrier("latents: stale output removed")
    manifest = precompute_latents(
        ctx.data_dir, out_dir, encode=encode, text_fields=text_fields, batch_size=32,
        fingerprint=fingerprint, process_index=jax.process_index(),
        process_count=jax.process_count(), input_field=input_field, features=features)
    if multi:
        barrier("latents")
        manifest = finalize_latents_manifest(out_dir, load_video_manifest(ctx.data_dir),
                                             write=jax.process_index() == 0)
    return manifest
