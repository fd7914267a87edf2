"""The paper-size TAE with Movie Gen's recipe: an SD-VAE-style backbone (ch 128, mult 1,2,4,4,
2 res blocks, z 16) inflated to video with three temporal stride-2 levels (8x8x8), its spatial
weights from an image autoencoder, joint image:video batches (1:3), L1 + KL + LPIPS + patch GAN,
and the outlier penalty (weight 1e5) switched on for the last 10K steps.

    mgen train --config=experiments/tae_paper.py --workdir=runs/tae_paper \\
        --config.tae.init_from_diffusers=path/to/vae \\   # a diffusers AutoencoderKL folder
        --config.tae.lpips_checkpoint=path/to/lpips.pth   # LPIPS weights (see configs/tae.py)

The VAE folder must have this architecture (the error names a key that differs; e.g. an SD 1.x
VAE with tae.z_channels=4). On a CPU this config is for building and planning
(tests/experiments/test_tae_experiments.py); train it on accelerators. Data defaults to synthetic
Shapes at 128 px / 32 frames.
"""
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.tae import tae_config


def get_config(arg=None):
    cfg = default_experiment()
    cfg.job = "tae"
    cfg.tae = tae_config("paper")
    cfg.data.update(frames=32, height=128, width=128, num_clips=4000)
    cfg.tae_train.update(steps=50_000, batch_size=8, checkpoint_every=1000)
    cfg.tae_optimizer.update(lr=1e-4, warmup_steps=1000)
    cfg.tae.update(
        l1_weight=1.0, image_batches=1, video_batches=3,
        # LPIPS weights cannot be downloaded here: point lpips_checkpoint at yours.
        perceptual_weight=1.0, lpips_checkpoint="weights/lpips.pth",
        # The paper does not publish its GAN weight or start; taming's usual values.
        disc_weight=0.5, disc_start=20_000,
        opl_weight=1e5, opl_start=cfg.tae_train.steps - 10_000)
    if arg is not None:
        raise ValueError(f"tae_paper takes no arg (got {arg!r})")
    return cfg
