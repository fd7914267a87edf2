"""`mgen plan` for Movie Gen Audio (cfg.job "video_to_audio"): the audio DiT's train step
(training/audio_dit_step.py) compiled ahead of time for a TPU topology, as planning/plan.py
does for the video DiT, and read the same way: memory per device from the compiled program,
FLOPs scan-corrected against the analytic count (models/audio/audio_dit_flops.py), collectives
from the HLO. plan.py's plan_train_step plans it when cfg.job is "video_to_audio", with this
file's batch, compiled step, analytic count and config summary.

The abstract batch is one global batch (audio_dit_train.batch_size) of the longest clip the
model trains on:
    latents  float32 [B, T, C]      T = audio_dit.max_frames (the position table: 768 latent
                                    frames = 30.72 s at 25 Hz for the 13b preset), C =
                                    dac_vae.latent_channels (128)
    video    float32 [B, T_v, D_v]  T_v = data.frames per-frame visual features of the same clip
                                    (what the video_to_audio job caches), D_v =
                                    video_feature_dim(vision) (MetaCLIP's projection: 1024)
    text.<name> / text_mask.<name>  cached encoder outputs, compute dtype, as the video plan's
The audio DiT is not the whole job: the DAC-VAE, the CLIP tower and T5 run once, ahead of
training (the cached latents, features and embeddings), so they are not in the step.
"""
from mgen_jax.configs.dac_vae import latent_rate
from mgen_jax.configs.text import text_shapes


def audio_batch_shapes(cfg) -> dict:
    """{field: (shape, dtype name)} of one global batch of the audio DiT's train step."""
    from mgen_jax.models.vision.clip_vision import video_feature_dim
    b = cfg.audio_dit_train.batch_size
    shapes = {"latents": ((b, cfg.audio_dit.max_frames, cfg.dac_vae.latent_channels), "float32"),
              "video": ((b, cfg.data.frames, video_feature_dim(cfg.vision)), "float32")}
    for name, (length, dim) in text_shapes(cfg.text).items():
        shapes[f"text.{name}"] = ((b, length, dim), cfg.compute_dtype)
        shapes[f"text_mask.{name}"] = ((b, length), "bool")
    return shapes


def abstract_audio_batch(cfg, mesh, rules) -> dict:
    """ShapeDtypeStructs (with shardings) of audio_batch_shapes."""
    import jax
    import jax.numpy as jnp
    from mgen_jax.training.sharded_training import batch_shardings
    shapes = {k: (s, jnp.dtype(d)) for k, (s, d) in audio_batch_shapes(cfg).items()}
    example = {k: jax.ShapeDtypeStruct(s, d) for k, (s, d) in shapes.items()}
    sh = batch_shardings(mesh, rules, example)
    return {k: jax.ShapeDtypeStruct(s, d, sharding=sh[k]) for k, (s, d) in shapes.items()}


def compile_audio_train_step(cfg, mesh, rules) -> dict:
    """Lower and compile the audio DiT's train step for `mesh` (plan_compiled_step's contract)."""
    from mgen_jax.models.builders import build_audio_dit
    from mgen_jax.planning.step_on_embeddings import compile_step_on_embeddings
    from mgen_jax.training.audio_dit_step import make_audio_dit_train_step
    from mgen_jax.training.dit_step import encoder_dropout_rates
    return compile_step_on_embeddings(
        cfg, mesh, rules, build_audio_dit(cfg), cfg.audio_dit_optimizer,
        cfg.audio_dit_train.steps, abstract_audio_batch(cfg, mesh, rules),
        lambda model, optimizer, null_text, null_mask: make_audio_dit_train_step(
            model, optimizer, flow_cfg=cfg.flow, masking_cfg=cfg.audio_dit.masking,
            null_text=null_text, null_mask=null_mask, video_dropout=cfg.audio_dit.video_dropout,
            encoder_dropout=encoder_dropout_rates(cfg.text)))


def audio_analytic_flops(cfg) -> dict:
    """audio_dit_train_flops for the planned batch. Several text encoders are one stream of
    sum(L_i) tokens whose text_dim is the token-weighted mean of their widths, which makes the
    text projections' count, sum(6 L_i D_i W), exact."""
    from mgen_jax.models.audio.audio_dit_flops import audio_dit_train_flops
    from mgen_jax.models.vision.clip_vision import video_feature_dim
    shapes = text_shapes(cfg.text)
    tokens = sum(length for length, _ in shapes.values())
    text_dim = sum(length * dim for length, dim in shapes.values()) / max(tokens, 1)
    return audio_dit_train_flops(
        cfg.audio_dit, frames=cfg.audio_dit.max_frames, text_tokens=tokens, text_dim=text_dim,
        video_dim=video_feature_dim(cfg.vision), latent_channels=cfg.dac_vae.latent_channels,
        batch_size=cfg.audio_dit_train.batch_size)


def audio_config_summary(cfg, main: dict, analytic: dict) -> dict:
    """The plan's "config" for the audio DiT (model "audio_dit")."""
    import jax
    a = cfg.audio_dit
    shapes = audio_batch_shapes(cfg)
    param_dtypes = sorted({str(x.dtype) for x in jax.tree.leaves(main["state"].params)})
    return {
        "model": "audio_dit", "size": a.size, "depth": a.depth, "width": a.width,
        "num_heads": a.num_heads, "mlp_dim": a.mlp_dim,
        "params": main["model"].num_params(),
        "latent_frames": a.max_frames,
        "audio_seconds": a.max_frames / latent_rate(cfg.dac_vae),
        "latent_channels": cfg.dac_vae.latent_channels,
        "video_features": {"frames": shapes["video"][0][1], "dim": shapes["video"][0][2],
                           "fps": cfg.data.fps},
        "tokens_per_sample": a.max_frames,
        "text_tokens": analytic["text_tokens"],
        "text_encoders": {n: {"tokens": length, "dim": dim}
                          for n, (length, dim) in text_shapes(cfg.text).items()},
        "global_batch": cfg.audio_dit_train.batch_size,
        "remat": a.remat, "attention": a.attention, "context_parallel": a.context_parallel,
        "scan_layers": a.scan_layers, "scan_unroll": a.scan_unroll,
        "dtypes": {"param_dtype_config": cfg.param_dtype, "params_actual": param_dtypes,
                   "compute_dtype": cfg.compute_dtype, "optimizer_state": param_dtypes},
    }
