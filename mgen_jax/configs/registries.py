"""Every extension point of mgen_jax, one registry each (configs/registry.py explains the form).

To add a DiT size, an attention kernel, a remat policy, a context-parallel strategy, a text
encoder, a data source, a benchmark or a job: write its code in the owning package, add one
entry here. `validate()`, `mgen --help` and the error messages pick it up; README "Extending
mgen_jax" walks through each.
"""
from mgen_jax.configs.optimizer import LR_SCHEDULES
from mgen_jax.configs.registry import Entry, Registry

# -- sizes (values) ------------------------------------------------------------------------------
DIT_PRESETS = Registry("DiT size", "", {
    "tiny": Entry(dict(width=128, depth=4, num_heads=4, mlp_dim=352, max_positions=(16, 32, 32)),
                  "tests and the quickstart"),
    # CPU-sized steps of a model-size ablation on the quickstart (experiments/sweeps/dit_size.py):
    # depths divisible by the quickstart's scan_unroll of 4.
    "small": Entry(dict(width=192, depth=8, num_heads=6, mlp_dim=528, max_positions=(16, 32, 32)),
                   "5.2 M with the quickstart's text (tiny: 1.3 M), for size sweeps on a CPU"),
    "base": Entry(dict(width=256, depth=12, num_heads=8, mlp_dim=704, max_positions=(16, 32, 32)),
                  "13.5 M with the quickstart's text, for size sweeps on a CPU"),
    # The scaling-study sizes below 30B are not published; 1b and 5b follow the ladder of the
    # public mindone reproduction (moviegen_spec.md section 2.4). Tables as in the 768 px stage.
    "1b": Entry(dict(width=1536, depth=24, num_heads=16, mlp_dim=4096, max_positions=(32, 96, 96)),
                "0.94 B (mindone's ladder)"),
    "5b": Entry(dict(width=3072, depth=32, num_heads=24, mlp_dim=8192, max_positions=(32, 96, 96)),
                "4.9 B (mindone's ladder)"),
    # The paper's 30B backbone: 48 layers, width 6144, 48 heads of 128, SwiGLU FFN 16384.
    "30b": Entry(dict(width=6144, depth=48, num_heads=48, mlp_dim=16384,
                      max_positions=(32, 96, 96)), "Movie Gen's 30B backbone (29.36 B)"),
})

# Movie Gen Audio's DiT (models/audio/audio_dit.py). Paper: 36 layers, attention / FFN 4608 /
# 18432, 13B without the encoders and the DAC-VAE; heads of 128 (as the video model) are ours.
# max_frames: the learned position table over 25 Hz latent frames; 13b: 30.72 s, the paper's
# <= 30 s clips, and a length 256 divides (the sequence splits over 'context' x 'tensor').
AUDIO_DIT_PRESETS = Registry("audio DiT size", "", {
    "tiny": Entry(dict(width=120, depth=4, num_heads=5, mlp_dim=480, max_frames=128),
                  "tests and the audio-visual quickstart (5.1 s windows)"),
    "13b": Entry(dict(width=4608, depth=36, num_heads=36, mlp_dim=18432, max_frames=768),
                 "Movie Gen Audio (12.44 B with T5-base and MetaCLIP inputs)"),
})

# Movie Gen Audio's audio autoencoder (models/audio/dac_vae.py): the Descript Audio Codec's
# encoder/decoder with a VAE bottleneck in place of its RVQ. Keys keep DAC's constructor names.
DAC_VAE_PRESETS = Registry("DAC-VAE size", "", {
    # 16 kHz -> 25 Hz latents (hop 640): the paper's latent rate at a third of its sample rate;
    # odd feature and latent widths so shape bugs show.
    "tiny": Entry(dict(sample_rate=16000, encoder_dim=4, encoder_rates=(2, 4, 8, 10),
                       feature_dim=31, latent_channels=15, decoder_dim=48,
                       decoder_rates=(10, 8, 4, 2)),
                  "tests: 16 kHz -> 25 Hz latents (0.15 M)"),
    # The audio-visual quickstart's: 8 kHz -> 50 Hz latents (hop 160). At the paper's hop-to-rate
    # ratio (640 samples a latent at 16 kHz, 320 at 8 kHz) a DAC this small learned no tone in
    # 600 CPU steps (measured: silence or its upsamplers' own buzz); at hop 160 it learns the
    # quickstart's tones and clicks in a few hundred.
    "quickstart": Entry(dict(sample_rate=8000, encoder_dim=8, encoder_rates=(2, 8, 10),
                             feature_dim=31, latent_channels=15, decoder_dim=48,
                             decoder_rates=(10, 8, 2)),
                        "the audio-visual quickstart: 8 kHz -> 50 Hz latents"),
    # 48 kHz -> 25 Hz, 128 channels (hop 1920 = 4 * 6 * 8 * 10); DAC's 44 kHz widths. Even
    # strides keep the decoder's output exactly hop * latent frames (an odd stride makes DAC's
    # transposed conv one sample short).
    "paper": Entry(dict(sample_rate=48000, encoder_dim=64, encoder_rates=(4, 6, 8, 10),
                        feature_dim=1024, latent_channels=128, decoder_dim=1536,
                        decoder_rates=(10, 8, 6, 4)),
                   "Movie Gen Audio: 48 kHz -> 25 Hz, 128 channels (84.2 M)"),
})

# CLIP vision towers (models/vision/clip_vision.py): Movie Gen Audio's per-frame video features.
CLIP_VISION_PRESETS = Registry("CLIP vision tower", "", {
    # MetaCLIP ViT-H/14 image tower (facebook/metaclip-h14-fullcc2.5b): 32 layers of width 1280,
    # 16 patches of 14 px per side at 224 px, projection 1024.
    "metaclip_h14": Entry(dict(hidden_size=1280, intermediate_size=5120, num_layers=32,
                               num_heads=16, patch_size=14, image_size=224, projection_dim=1024,
                               hidden_act="gelu"), "Movie Gen Audio's video features (632 M)"),
    # Odd sizes (5 x 5 patches of 7 px, 5 heads of 8, projection 23) so transposed or mis-split
    # weights cannot line up by accident.
    "tiny": Entry(dict(hidden_size=40, intermediate_size=72, num_layers=2, num_heads=5,
                       patch_size=7, image_size=35, projection_dim=23, hidden_act="quick_gelu"),
                  "tests"),
})

# -- model code ----------------------------------------------------------------------------------
# per_shard: a kernel the SPMD partitioner cannot split (Pallas) or splits badly (scans over the
# sequence): on a mesh it runs per shard under shard_map (models/attention/context_parallel/).
ATTENTION_BACKENDS = Registry("attention backend", "mgen_jax.models.attention", {
    "xla": Entry("mgen_jax.models.attention.xla:xla_attention",
                 "plain XLA, materialises the scores (reference)"),
    "chunked": Entry("mgen_jax.models.attention.chunked:chunked_attention",
                     "pure-JAX flash-style blocks, memory linear in length, any platform",
                     {"per_shard": True}),
    "cudnn": Entry("mgen_jax.models.attention.cudnn:cudnn_attention",
                   "cuDNN fused flash attention (NVIDIA GPU)"),
    "splash": Entry("mgen_jax.models.attention.splash:splash_attention",
                    "Pallas splash attention (TPU)", {"per_shard": True}),
    "auto": Entry("mgen_jax.models.attention.platform_choice:platform_backend",
                  "the platform's best: splash on TPU, cudnn on CUDA GPUs, chunked elsewhere"),
})

CONTEXT_PARALLEL = Registry("context-parallel strategy", "mgen_jax.models.attention", {
    "all_gather": Entry("mgen_jax.models.attention.context_parallel.all_gather:all_gather_attention",
                        "all-gather K/V over 'context' (Movie Gen)"),
    "ring": Entry("mgen_jax.models.attention.context_parallel.ring:ring_attention",
                  "K/V blocks circulate by ppermute, online softmax"),
    "ulysses": Entry("mgen_jax.models.attention.context_parallel.ulysses:ulysses_attention",
                     "all-to-all sequence <-> heads"),
})

# meta reruns_splash_forward: whether the backward re-runs the Pallas flash forward (the plan's
# estimate of the kernel's cost, which XLA cannot see, depends on it).
_RERUNS = {"reruns_splash_forward": True}
REMAT_POLICIES = Registry("remat policy", "mgen_jax.models.dit", {
    "none": Entry("mgen_jax.models.dit.remat:keep_everything", "nothing recomputed",
                  {"reruns_splash_forward": False}),
    "full": Entry("mgen_jax.models.dit.remat:save_nothing",
                  "keep only each layer's input, recompute the block", _RERUNS),
    "save_dots": Entry("mgen_jax.models.dit.remat:save_weight_matmuls",
                       "keep matmuls against weights, recompute the rest", _RERUNS),
    "save_attention_out": Entry("mgen_jax.models.dit.remat:save_attention_out",
                                "keep only the self-attention output", _RERUNS),
    "offload": Entry("mgen_jax.models.dit.remat:offload_attention_out",
                     "the self-attention output kept in pinned host memory (TPU/GPU)", _RERUNS),
    "save_splash_residuals": Entry("mgen_jax.models.dit.remat:save_splash_residuals",
                                   "full remat but the splash kernel's output and logsumexp",
                                   {"reruns_splash_forward": False}),
})

# `mgen data build --source=KIND[:REST]`: a function (rest, tfds_data_dir) -> the source (its
# items, captions and decode; data_pipelines/build/sources.py), or None when REST is malformed.
BUILD_SOURCES = Registry("build source", "data_pipelines.build", {
    "folder": Entry("data_pipelines.build.sources:folder_source",
                    "folder:PATH (video / image files, captions.jsonl|csv or NAME.txt)"),
    "tfds": Entry("data_pipelines.build.sources:tfds_source",
                  "tfds:NAME[/CONFIG][:SPLIT] (a prepared array_record TFDS dataset)"),
    "shapes": Entry("data_pipelines.build.sources:shapes_source",
                    "shapes (cfg.shapes_clips synthetic clips)"),
})

# An encoder architecture family: its NNX module, and (for checkpoints) the loader of a
# transformers folder and the converter of its config.json.
TEXT_ENCODER_KINDS = Registry("text encoder kind", ("mgen_jax.models.text", "mgen_jax.checkpointing",
                                                   "mgen_jax.configs"), {
    "t5": Entry("mgen_jax.models.text.t5_encoder:T5Encoder",
                "T5 v1.1 / UL2 / ByT5 / original T5 encoder",
                {"preset_config": "mgen_jax.configs.text_encoders:t5_config",
                 "load_folder": "mgen_jax.checkpointing.t5_convert:load_t5_encoder",
                 "config_from_transformers":
                     "mgen_jax.checkpointing.t5_convert:t5_config_from_transformers",
                 "model_types": ("t5", "mt5", "umt5"), "pooled_output": False,
                 "width_key": "d_model"}),
    "clip": Entry("mgen_jax.models.text.clip_text:CLIPTextTransformer",
                  "CLIP / MetaCLIP text tower",
                  {"preset_config": "mgen_jax.configs.text_encoders:clip_text_config",
                   "load_folder": "mgen_jax.checkpointing.clip_convert:load_clip_text",
                   "config_from_transformers":
                       "mgen_jax.checkpointing.clip_convert:clip_config_from_transformers",
                   "model_types": ("clip", "clip_text_model"), "pooled_output": True,
                   "width_key": "hidden_size"}),
})

# The published encoders `mgen convert` / `mgen text-embed` take (--encoder): name -> kind.
TEXT_ENCODERS = Registry("text encoder", "", {
    "ul2": Entry("t5", "UL2 (Movie Gen's prompt encoder)"),
    "byt5": Entry("t5", "ByT5 (Movie Gen's visual-text encoder)"),
    "t5": Entry("t5", "T5 / T5 v1.1 (the audio model's text encoder)"),
    "metaclip": Entry("clip", "MetaCLIP text tower (Movie Gen's long-prompt encoder)"),
})

MESH_RULES = Registry("logical-rules preset", "mgen_jax.parallel", {
    "default": Entry("mgen_jax.parallel.logical_rules:DEFAULT_RULES",
                     "FSDP + Megatron tensor + sequence + context parallelism"),
    "no_sequence_parallel": Entry("mgen_jax.parallel.logical_rules:NO_SEQUENCE_PARALLEL_RULES",
                                  "the same, residual stream replicated over 'tensor'"),
})

SCHEDULES = Registry("sampling schedule", "mgen_jax.flow", {
    "linear": Entry("mgen_jax.flow.schedules:linear_schedule", "uniform steps in t"),
    "linear_quadratic": Entry("mgen_jax.flow.schedules:linear_quadratic_schedule",
                              "Movie Gen: linear first half, quadratic to t = 1"),
})

SAMPLERS = Registry("ODE sampler", "mgen_jax.flow", {
    # meta evaluations_per_step: model forwards per step (`mgen plan --mode=sample` times them).
    "euler": Entry("mgen_jax.flow.samplers:euler_sample", "first-order Euler (Movie Gen)",
                   {"evaluations_per_step": 1}),
    "midpoint": Entry("mgen_jax.flow.samplers:midpoint_sample",
                      "second-order explicit midpoint, 2 evaluations per step (Movie Gen Audio)",
                      {"evaluations_per_step": 2}),
})

# -- data, jobs, tools ---------------------------------------------------------------------------
DATA_SOURCES = Registry("data source", "data_pipelines", {
    "shapes": Entry("data_pipelines.shapes_writer:write_shapes_source",
                    "synthetic Shapes clips generated in code (data.num_clips, frames, size)"),
    "shapes_av": Entry("data_pipelines.shapes_av_writer:write_shapes_av_source",
                       "audio-visual Shapes: clips with a soundtrack tied to what is seen "
                       "(data.audio_sample_rate); the video_to_audio job's data"),
    "records": Entry("data_pipelines.records_source:use_built_dataset",
                     "a dataset built by `mgen data build` in data.dir (bucketed, mixed)"),
})

# A job is what `mgen train` runs for cfg.job, then `mgen eval` (and the end of `mgen train`)
# evaluates with `evaluate`.
JOBS = Registry("job", ("mgen_jax.training", "mgen_jax.evaluation"), {
    "text_to_video": Entry("mgen_jax.training.text_to_video_job:run_text_to_video",
                           "data -> TAE -> latents -> DiT; evaluated on held-out prompts",
                           {"evaluate": "mgen_jax.evaluation.heldout:evaluate_workdir"}),
    "video_to_audio": Entry("mgen_jax.training.video_to_audio_job:run_video_to_audio",
                            "audio-visual data -> DAC-VAE -> audio latents -> audio DiT; "
                            "evaluated on held-out clips' pitch and onset synchrony",
                            {"evaluate": "mgen_jax.evaluation.av_report:evaluate_audio_workdir"}),
    "tae": Entry("mgen_jax.training.tae_job:run_tae",
                 "data -> TAE; evaluated by held-out reconstruction",
                 {"evaluate": "mgen_jax.evaluation.tae_report:evaluate_tae_workdir"}),
})

# `sample` runs the inference pipeline, so it lives in (and may import) the inference layer.
BENCHMARKS = Registry("benchmark", ("mgen_jax.benchmarks", "mgen_jax.inference"), {
    "dit": Entry("mgen_jax.benchmarks.dit_step:dit_bench",
                 "DiT train step vs same-process matmul peak; attention memory"),
    "tae": Entry("mgen_jax.benchmarks.tae_throughput:tae_bench",
                 "TAE encode/decode frames/s and peak memory vs clip length"),
    "text": Entry("mgen_jax.benchmarks.text_encoders:text_bench",
                  "text encoders' tokens/s vs same-process matmul peak"),
    "data": Entry("mgen_jax.benchmarks.data_bench:data_bench",
                  "data build clips/s per worker and stage shares; loader batches/s vs the "
                  "tiny DiT's steps/s"),
    "sample": Entry("mgen_jax.inference.sampling_bench:sample_bench",
                    "sampling: seconds per video and per denoising step, TAE decode share "
                    "(the quickstart model and a mid size DiT)"),
    "checkpoint": Entry("mgen_jax.benchmarks.checkpoint_bench:checkpoint_bench",
                        "train step time around a checkpoint, synchronous vs asynchronous "
                        "Orbax saves (quickstart DiT and a few hundred MB state)"),
})

ALL = {"dit.size": DIT_PRESETS, "dit.attention": ATTENTION_BACKENDS,
       "dit.context_parallel": CONTEXT_PARALLEL, "dit.remat": REMAT_POLICIES,
       "audio_dit.size": AUDIO_DIT_PRESETS, "dac_vae.size": DAC_VAE_PRESETS,
       "vision.preset": CLIP_VISION_PRESETS,
       "text.encoders.*.kind": TEXT_ENCODER_KINDS, "--encoder": TEXT_ENCODERS,
       "mesh.rules": MESH_RULES, "flow.schedule": SCHEDULES, "flow.sampler": SAMPLERS,
       "<phase>_optimizer.schedule": LR_SCHEDULES,
       "data.source": DATA_SOURCES, "mgen data build --source": BUILD_SOURCES, "job": JOBS,
       "mgen bench": BENCHMARKS}
