"""Movie Gen Video 30B: the paper's recipe (Table 3): three pre-training stages and supervised
fine-tuning, for TPU v5p slices.

    mgen plan --config=experiments/moviegen_30b.py:t2iv_768 --topology=v5p:8x8x4 --json=plan.json

`arg` names the stage (moviegen_spec.md section 4.1). Each stage starts from the previous one's
workdir (`--config.dit_train.init_from=runs/t2i_256`; position tables extended at 256 px and
stretched x3 at 768 px, the temporal table added, checkpointing/stage_init.py), and several SFT
runs are averaged at the end (`mgen average --out=runs/sft_avg runs/sft_a runs/sft_b ...`).

  t2i_256   text-to-image warm-up, 256 px images (data.frames=1: one latent frame, 16x16 = 256
            tokens). Position tables: spatial only (16 x 16), no temporal table. Paper: batch
            9216, lr 1e-4, 210k iterations. Meant for v5p:8x8x4 (256 chips), pure FSDP over all
            256 chips: 36 images per chip, the paper's global batch on one slice.
  t2iv_256  joint text-to-image/video at 256 px, up to 32 latent frames (256 frames at 8x
            temporal compression: 32 x 16 x 16 = 8,192 tokens). Position tables: spatial doubled
            (32 x 32, more aspect ratios), temporal added for 32 latent frames. Paper: batch
            1536 -> 3072 on up to 6144 GPUs, TP = 4, lr 6e-5, 185k iterations. Meant for
            v5p:8x8x4 (256 chips): tensor 4 x fsdp 64, global batch 256 (one 8K-token clip per
            chip; the paper's batch is reached with more slices on the data axis).
  t2iv_768  joint text-to-image/video at 768 px: 768x768 x 256 frames = 32 x 48 x 48 = 73,728
            tokens. Position tables: spatial x3 (96 x 96), temporal 32. Paper: batch 1536 -> 512,
            lr 6e-5 stepped down at plateaus, 74.5k iterations, TP = 4, CP <= 2. Meant for
            v5p:8x8x4 (256 chips) with one sample per 8 chips: fsdp 32 x context 2 x tensor 4,
            global batch 32. LR: constant 6e-5, halved each time the held-out validation loss
            (1,024 clips of the 768 px bucket, every 1,000 steps) has not improved for 2,000
            steps, down to 1e-5 (the paper steps 6e-5 -> 1e-5 at plateaus; the factor 0.5 is
            mindone's [inferred]).
  sft       supervised fine-tuning on the curated set: 768 px, 256-frame buckets of 16 s at
            16 fps and 10.6 s at 24 fps (experiments/data_sft.py builds them from clips of
            10.6-16 s: a 16 s clip takes the 16 fps bucket, a shorter one the 24 fps bucket),
            videos only, cosine LR. Paper: "small batch", 64 nodes; LR and length not given: we
            start at the 768 px stage's final 1e-5 and decay to 0.1x over 10k steps [inferred],
            global batch 32 on v5p:8x8x4 as at 768 px.

The first two stages hold their LR constant after the warm-up (the paper's Table 3 gives one
LR per stage; cosine is SFT's).

Common to all stages: the 30B DiT (48 layers, width 6144, 48 heads, SwiGLU 16384), fp32 master
weights and AdamW state, bf16 compute, full rematerialisation of every layer, Pallas splash
attention (TPU) for self-attention; the paper's TAE (8x8x8 compression, 16 latent channels).
At 768 px, where the attention core is 63% of the step's FLOPs, the remat policy keeps the splash
kernel's output and log-sum-exp (save_splash_residuals) so the backward does not re-run the
flash forward: `mgen plan` for v5p:8x8x4 counts 48 forward kernel launches instead of 96 and
31.7 GiB per chip instead of 26.3 (2026-12-01).

Text conditioning: Movie Gen's three encoders (configs/text.py moviegen_encoders): UL2 (300
tokens, 4096 wide), long-prompt MetaCLIP (256, 1024) and ByT5-small over the quoted text (100,
1472), each projected + LayerNormed to 6144 and concatenated (656 tokens), with the FPS tag.
The DiT trains on cached embeddings (text.precompute: `mgen data precompute-text`); set each
text.encoders.<name>.checkpoint to the converted weights (`mgen convert`).

Optimizer: AdamW as in spec section 4.1 (lr per stage above). Betas, weight decay, warm-up and
clipping are not given by the paper; we take mindone's (0.9/0.999, wd 0.1, 1000 warm-up steps,
clip 1.0) [inferred, not the paper's].
"""
from mgen_jax.configs.dit import dit_config
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.configs.optimizer import optimizer_config
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.tae import tae_config
from mgen_jax.configs.text import moviegen_encoders
from mgen_jax.configs.training import train_config

STAGES = {
    # frames, pixels, position tables (t, h, w), global batch, lr, iterations, mesh, topology
    "t2i_256": dict(frames=1, size=256, max_positions=(1, 16, 16), batch=9216, lr=1e-4,
                    steps=210_000, mesh=dict(data=1, fsdp=256, context=1, tensor=1),
                    topology="v5p:8x8x4", schedule="constant"),
    "t2iv_256": dict(frames=256, size=256, max_positions=(32, 32, 32), batch=256, lr=6e-5,
                     steps=185_000, mesh=dict(data=1, fsdp=64, context=1, tensor=4),
                     topology="v5p:8x8x4", schedule="constant"),
    "t2iv_768": dict(frames=256, size=768, max_positions=(32, 96, 96), batch=32, lr=6e-5,
                     steps=74_500, mesh=dict(data=1, fsdp=32, context=2, tensor=4),
                     topology="v5p:8x8x4", remat="save_splash_residuals", schedule="plateau"),
    "sft": dict(frames=256, size=768, max_positions=(32, 96, 96), batch=32, lr=1e-5,
                steps=10_000, mesh=dict(data=1, fsdp=32, context=2, tensor=4),
                topology="v5p:8x8x4", remat="save_splash_residuals", schedule="cosine",
                data_dir="data/moviegen_sft"),
}


def get_config(arg=None):
    if arg not in STAGES:
        raise ValueError(f"moviegen_30b stage {arg!r} unknown; choose one of {sorted(STAGES)} "
                         "(e.g. experiments/moviegen_30b.py:t2iv_768)")
    stage = STAGES[arg]
    cfg = default_experiment()
    cfg.param_dtype, cfg.compute_dtype = "float32", "bfloat16"

    cfg.tae = tae_config("paper")
    # Bucketed record sets built by `mgen data build` (mgen_jax/configs/data_build.py: the
    # paper's curation, 5 aspects x 5 durations at 16 fps; each prompt's FPS tag is its clip's
    # own rate). data.frames x height x width is the stage's largest square bucket, the shape
    # `mgen plan` compiles for. Point data.dir at the stage's build.
    cfg.data.update(source="records", dir=stage.get("data_dir", f"data/moviegen_{arg}"),
                    frames=stage["frames"], height=stage["size"], width=stage["size"], fps=16)
    if stage["frames"] == 1:  # the text-to-image warm-up: images only
        cfg.data.mixture.update(images=1.0, videos=0.0)
    elif arg == "sft":  # curated videos only
        cfg.data.mixture.update(images=0.0, videos=1.0)
    else:
        cfg.data.mixture.update(images=1.0, videos=10.0)  # Movie Gen's 1:10

    cfg.dit = dit_config("30b")
    cfg.dit.update(max_positions=stage["max_positions"], remat=stage.get("remat", "full"),
                   attention="splash",
                   context_parallel="all_gather", scan_layers=True, scan_unroll=1)

    cfg.text.encoders = moviegen_encoders()  # UL2 300 + MetaCLIP 256 + ByT5 100 tokens
    cfg.text.update(fps_tag=True, precompute=True)

    cfg.dit_train = train_config(steps=stage["steps"], batch_size=stage["batch"])
    cfg.dit_train.update(log_every=100, checkpoint_every=1000)
    cfg.dit_optimizer = optimizer_config(lr=stage["lr"], warmup_steps=1000)
    cfg.dit_optimizer.update(b1=0.9, b2=0.999, weight_decay=0.1, grad_clip=1.0,
                             schedule=stage["schedule"])
    if stage["schedule"] == "plateau":
        cfg.dit_optimizer.update(plateau_on="validation_loss", plateau_factor=0.5,
                                 plateau_patience=2000, plateau_min_scale=1 / 6)
    # Held-out validation loss at fixed t (the paper's development proxy, which it found to
    # follow human evaluation): 1,024 clips of the stage's own bucket (at least one global
    # batch: 9,216 images at t2i_256), every 1,000 steps.
    cfg.dit_train.update(validate_every=1000, validation_clips=max(1024, stage["batch"]))
    if arg == "sft":  # a short stage: warm-up 100 steps, cosine to 0.1x
        cfg.dit_optimizer.update(warmup_steps=100, end_lr_fraction=0.1)
        cfg.dit_train.update(validate_every=500, validation_clips=256)

    cfg.mesh = mesh_config(**stage["mesh"], rules="default")
    return cfg
