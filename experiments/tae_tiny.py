"""The tiny TAE on synthetic Shapes, on one CPU: the autoencoder the quickstart uses.

    mgen train --config=experiments/tae_tiny.py --workdir=runs/tae_tiny
    mgen eval --workdir=runs/tae_tiny        # PSNR / SSIM on held-out clips -> eval.json

8x compression in time, height and width into 16 channels (a 2x2x2 space-time patch, then two
spatial and two temporal stride-2 levels), joint image/video batches (1:3), MSE + KL, the outlier penalty for the last 10% of the steps
(as the paper's last ~10K). Add the paper's other terms with overrides, e.g. --config.tae.disc_weight=0.5
--config.tae.disc_start=2000, --config.tae.perceptual_weight=1 --config.tae.lpips_checkpoint=...
`arg` "smoke" runs a few steps (wiring check).
"""
from mgen_jax.configs.recipes import tiny_tae_recipe
from mgen_jax.configs.schema import default_experiment


def get_config(arg=None):
    cfg = tiny_tae_recipe(default_experiment())
    cfg.job = "tae"
    cfg.seed = 0
    # ~10 minutes on a 2-core CPU: 3000 steps, every 4th an image batch of 4 frames per clip.
    cfg.tae.update(image_batches=1, video_batches=3, images_per_clip=4)
    cfg.tae_train.steps = 3000
    # The paper's schedule: the outlier penalty (weight 1e5) over the last 10% of the steps
    # (Movie Gen: the last ~10K iterations), logged as opl_weight.
    cfg.tae.update(opl_weight=1e5, opl_start=2700)
    if arg == "smoke":
        cfg.data.num_clips = 64
        cfg.tae_train.update(steps=4, batch_size=4, log_every=2, checkpoint_every=2)
        cfg.tae.opl_start = 2  # the OPL on for the last 2 of 4 steps
        cfg.tae_optimizer.warmup_steps = 1
        cfg.eval.update(tae_clips=8, tae_long_frames=40)
    elif arg is not None:
        raise ValueError(f"tae_tiny arg {arg!r} unknown (use nothing or 'smoke')")
    return cfg
