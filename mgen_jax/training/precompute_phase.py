"""The precompute phase between the TAE and the DiT: every clip encoded once into TAE latents
(with its caption's token ids, or its cached text embeddings when cfg.text.precompute), so the
DiT phase never runs the TAE encoder. Also the text cache behind `mgen data precompute-text`."""
import jax

from data_pipelines.precompute_latents import precompute_latents
from data_pipelines.precompute_text import TextCacheReader, precompute_text
from mgen_jax.checkpointing.text_encoder_checkpoint import load_prompt_encoder
from mgen_jax.configs.text import text_fingerprint
from mgen_jax.models.builders import build_tae, build_text_encoders
from mgen_jax.models.tae.video_range import video_to_float
from mgen_jax.models.text.text_inputs import token_fields, tokenize_prompts
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.phase_runner import JobContext
from mgen_jax.workdir import latents_dir, text_cache_dir


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


def encode_latents(ctx: JobContext, tae_params, tae_step: int) -> dict:
    """Latent shards of the dataset (returns their manifest); their text fields are token ids, or
    cached embeddings when cfg.text.precompute (the text cache is built first)."""
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
        def text_fields(captions, shard, start):
            return token_fields(tokenize_prompts(cfg.text, captions, fps=cfg.data.fps))
    return precompute_latents(
        ctx.data_dir, latents_dir(ctx.workdir),
        encode=lambda v: encode(tae_params, v), text_fields=text_fields, batch_size=32,
        fingerprint={"tae_step": tae_step, "text": text_fingerprint(cfg),
                     "precomputed_text": bool(cfg.text.precompute)},
        process_index=jax.process_index(), process_count=jax.process_count())
