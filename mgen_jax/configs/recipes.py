"""Training recipes shared by several experiments (experiments/*.py import them from here)."""


def tiny_tae_recipe(cfg):
    """The tiny TAE's data, loss and optimizer settings (shared with experiments/quickstart.py)."""
    cfg.data.update(frames=16, height=32, width=32, num_clips=2000, num_shards=4, fps=8)
    # MSE only: L1 stalls a tiny TAE at "all black" on sparse shapes (see training/tae_step.py).
    cfg.tae.update(l1_weight=0.0, mse_weight=1.0)
    cfg.tae_optimizer.update(lr=5e-4, warmup_steps=20)
    cfg.tae_train.update(steps=2500, batch_size=8, log_every=50,
                         checkpoint_every=300)
    return cfg
