"""The tiny text-to-video model (the quickstart's TAE and DiT) trained on a folder of your own
videos and images, built into bucketed records first:

    mgen data build --source=folder:PATH --out=DATA --config=experiments/data_tiny.py
    mgen train --config=experiments/folder_t2v.py --config.data.dir=DATA --workdir=runs/folder

Batches come one bucket at a time (experiments/data_tiny.py: 32x32, 32x48 and 48x32 px at 8, 16
and 32 frames, and 1-frame images), images and videos mixed 1:10 as in Movie Gen; each prompt's
FPS tag is its clip's own frame rate. Samples and the TAE's reconstruction PSNR are taken at
16 x 32 x 32 (data.frames, height, width: one of the buckets) on the captions of the dataset's
first clips of that bucket. `arg` "smoke" runs a few steps (wiring check).
"""
from mgen_jax.configs.recipes import tiny_tae_recipe
from mgen_jax.configs.schema import default_experiment


def get_config(arg=None):
    cfg = default_experiment()
    cfg.seed = 0
    tiny_tae_recipe(cfg)
    cfg.data.update(source="records", dir="", frames=16, height=32, width=32, fps=8,
                    batching="fixed", small_buckets="repeat")  # a folder: a few clips a bucket
    cfg.data.mixture.update(images=1.0, videos=10.0)
    cfg.tae.image_batches = 0  # image batches come from the image buckets (data.mixture)
    cfg.flow.latent_sample = "mean"
    cfg.text.update(fps_tag=True, precompute=True)
    cfg.dit.update(patch_size=(1, 1, 1), scan_unroll=4)  # as in experiments/quickstart.py
    cfg.tae_train.update(steps=1500, batch_size=8, log_every=50, checkpoint_every=500)
    cfg.dit_train.update(steps=1500, batch_size=16, log_every=50, checkpoint_every=500)
    cfg.dit_optimizer.update(lr=1e-3, warmup_steps=100, weight_decay=0.0)
    cfg.eval.update(prompts=4, samples_per_prompt=2, sample_steps=50, guidance_scale=5.0)
    if arg == "smoke":  # wiring check: seconds, not quality
        cfg.tae_train.update(steps=4, batch_size=2, log_every=2, checkpoint_every=2)
        cfg.dit_train.update(steps=4, batch_size=2, log_every=2, checkpoint_every=2)
        cfg.tae_optimizer.warmup_steps = cfg.dit_optimizer.warmup_steps = 1
        cfg.eval.update(prompts=2, samples_per_prompt=1, sample_steps=4)
    elif arg is not None:
        raise ValueError(f"folder_t2v arg {arg!r} unknown (use nothing or 'smoke')")
    return cfg
