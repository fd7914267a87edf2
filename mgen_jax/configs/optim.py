"""Optimizer / schedule sub-config (AdamW, warm-up then cosine, global-norm clipping)."""
import ml_collections


def optim_config(lr: float = 1e-4, steps: int = 1000, batch_size: int = 8,
                 warmup_steps: int = 100) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
        end_lr_fraction=0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
        log_every=25, checkpoint_every=200, keep_checkpoints=2))
