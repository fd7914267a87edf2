"""Optimizer sub-config (`tae_optimizer`, `dit_optimizer`): AdamW, linear warm-up then cosine
decay to end_lr_fraction x lr over the phase's steps, global-norm clipping
(training/optimizer.py)."""
import ml_collections


def optimizer_config(lr: float = 1e-4, warmup_steps: int = 100) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        lr=lr, warmup_steps=warmup_steps, end_lr_fraction=0.1, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=0.0, grad_clip=1.0))
