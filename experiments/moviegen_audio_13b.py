"""Movie Gen Audio 13B (spec 6.4): the audio DiT's pre-training, for a TPU v5p slice.

    mgen plan --config=experiments/moviegen_audio_13b.py --topology=v5p:8x8x4 --json=plan.json

From the paper [P] (moviegen_spec.md 6.4):
  * the audio DiT: 36 DiT layers (not Llama blocks), width 4608, FFN 18432, one shared
    modulation MLP plus per-layer biases (audio_dit.size=13b: 12.44 B parameters with these
    inputs);
  * DAC-VAE latents: 48 kHz audio -> 25 Hz, 128 channels (dac_vae paper preset);
  * video: MetaCLIP ViT-H/14 per-frame embeddings, 1024-d, resampled to the audio frame rate,
    projected and added frame by frame (vision metaclip_h14, features image_embeds);
  * text: T5-base (768-d), at most 512 tokens, cross-attention in every block;
  * masked audio prediction (generation, extension, infilling) on clips of <= 30 s;
  * pre-training: 500K updates, effective batch 1,536 sequences; AdamW with weight decay 0.1,
    bf16, EMA 0.999 [S1];
  * sampling: midpoint solver, 64 steps, CFG 3 [S1].

Inferred here, not the paper's:
  * clip length: 768 latent frames = 30.72 s, the 13b preset's position table (the paper says
    sequences of <= 30 s; 768 = 3 x 256 is our round number just above);
  * video features at 25 fps (data.fps=25, data.frames=768): one MetaCLIP embedding per audio
    latent frame, so the model's resampling is the identity. The paper says the features are
    resampled to the audio rate, not the rate they are taken at; 30 fps (922 frames per clip)
    would change the step by a [B, 922, 1024] input and a linear resample, nothing measurable;
  * masking task mix (configs/audio_dit.py) and CFG dropout: text 0.1, video 0.1;
  * learning rate 1e-4 with 1,000 warm-up steps and cosine decay to 0.1x, gradient clipping
    1.0, betas 0.9/0.999 (the video model's inferred values; the paper gives none for audio);
  * the slice, mesh and batch: v5p:8x8x4 (256 chips, 95 GiB each) with pure FSDP over all
    256 chips and the paper's effective batch 1,536 on one slice (6 clips of 768 frames per
    chip). A 768-frame sequence needs neither tensor nor context parallelism: the fp32
    weights, AdamW moments and EMA (16 bytes a parameter, 199 GB) shard to 0.8 GiB per
    chip, and each chip's 6 x 768 tokens keep the matmuls large. Full rematerialisation of
    every layer, Pallas splash attention. `mgen plan` for v5p:8x8x4 (2026-12-01): 5.06 GiB per
    chip of 95 (arguments 0.87, temporaries 4.11), compiled/analytic FLOPs 1.31 (full remat's
    extra forward), XLA's estimate 1.47 s a step, MFU ~50%: the 500K updates in ~8.5 days on
    one slice. With that much memory left, a lighter remat policy (save_dots, or none: ~25%
    fewer FLOPs) is the next thing to plan.

Data: the job reads a source with soundtracks (training/video_to_audio_job.py AUDIO_SOURCES);
today that is the synthetic shapes_av, a placeholder: the paper's O(1)M hours need a built
audio-visual dataset. The plan does not read any data.
"""
from mgen_jax.configs.audio_dit import audio_dit_config
from mgen_jax.configs.dac_vae import dac_vae_config
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.configs.optimizer import optimizer_config
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.text import encoder_spec
from mgen_jax.configs.training import train_config
from mgen_jax.configs.vision import clip_vision_config

LATENT_FRAMES = 768     # 30.72 s at 25 Hz
STEPS = 500_000         # pre-training updates [P]
BATCH = 1_536           # effective batch [P]


def get_config(arg=None):
    if arg is not None:
        raise ValueError(f"moviegen_audio_13b takes no argument, got {arg!r}")
    cfg = default_experiment()
    cfg.job = "video_to_audio"
    cfg.param_dtype, cfg.compute_dtype = "float32", "bfloat16"

    cfg.dac_vae = dac_vae_config("paper")  # 48 kHz -> 25 Hz x 128
    cfg.vision = clip_vision_config("metaclip_h14")  # features: image_embeds (1024)
    cfg.vision.features = "image_embeds"
    cfg.audio_dit = audio_dit_config("13b")
    cfg.audio_dit.update(max_frames=LATENT_FRAMES, remat="full", attention="splash",
                         context_parallel="all_gather", scan_layers=True, scan_unroll=1,
                         video_dropout=0.1)

    # T5-base over the prompt, 512 tokens; no FPS tag (the video model's conditioning).
    cfg.text.encoders = {"t5": encoder_spec("t5", "t5-base", max_length=512, tokenizer="")}
    cfg.text.update(fps_tag=False, precompute=True)

    cfg.data.update(source="shapes_av", frames=LATENT_FRAMES, fps=25,
                    audio_sample_rate=cfg.dac_vae.sample_rate)

    cfg.audio_dit_train = train_config(steps=STEPS, batch_size=BATCH)
    cfg.audio_dit_train.update(log_every=100, checkpoint_every=1000)
    cfg.audio_dit_optimizer = optimizer_config(lr=1e-4, warmup_steps=1000)
    cfg.audio_dit_optimizer.update(b1=0.9, b2=0.999, weight_decay=0.1, grad_clip=1.0,
                                   schedule="cosine", end_lr_fraction=0.1, ema_decay=0.999)
    cfg.flow.update(text_dropout=0.1, sampler="midpoint", sample_steps=64, guidance_scale=3.0)

    cfg.mesh = mesh_config(data=1, fsdp=256, context=1, tensor=1, rules="default")
    return cfg
