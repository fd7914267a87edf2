"""The paper-size TAE: an SD-VAE-style backbone (ch 128, mult 1,2,4,4, 2 res blocks, z 16)
inflated to video with three temporal stride-2 levels (8x8x8), as in Movie Gen.

    mgen train --config=experiments/tae_paper.py --workdir=runs/tae_paper \\
        [--config.tae.opl_weight=1e5]            # outlier penalty, the paper's fine-tuning stage

Spatial weights start from an image autoencoder via checkpointing/tae_diffusers_convert.py. On a CPU
this config is for building and planning (see tests/experiments/test_tae_experiments.py); train
it on accelerators. Data defaults to synthetic Shapes at 128 px / 32 frames.
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
    if arg is not None:
        raise ValueError(f"tae_paper takes no arg (got {arg!r})")
    return cfg
