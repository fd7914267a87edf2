"""Optimizer sub-config (`tae_optimizer`, `dit_optimizer`): AdamW with a learning-rate schedule
(LR_SCHEDULES), global-norm clipping, micro-batch gradient accumulation, an optional EMA of the
parameters and the non-finite guard's stop (training/optimizer.py, training/guards.py)."""
import ml_collections

from mgen_jax.configs.registry import Entry, Registry

# Each target is fn(optimizer_cfg, total_steps) -> optax schedule; meta on_plateau: the schedule
# is further scaled by plateau_factor when the loss stops improving (reduce_on_plateau).
LR_SCHEDULES = Registry("learning-rate schedule", "mgen_jax.training", {
    "cosine": Entry("mgen_jax.training.optimizer:warmup_cosine",
                    "linear warm-up, cosine decay to end_lr_fraction x lr over the phase"),
    "constant": Entry("mgen_jax.training.optimizer:warmup_constant",
                      "linear warm-up, then lr"),
    "plateau": Entry("mgen_jax.training.optimizer:warmup_constant",
                     "linear warm-up, then lr x plateau_factor each time the loss "
                     "(plateau_on: the training loss by windows, or the held-out validation "
                     "loss) has not improved for plateau_patience steps", {"on_plateau": True}),
})


def optimizer_config(lr: float = 1e-4, warmup_steps: int = 100) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        lr=lr, warmup_steps=warmup_steps, end_lr_fraction=0.1, b1=0.9, b2=0.999, eps=1e-8,
        weight_decay=0.0, grad_clip=1.0,
        schedule="cosine",
        # plateau: the loss is averaged over windows of plateau_window steps (a per-step
        # training loss is too noisy to compare); plateau_patience steps (a multiple of the
        # window) without a better window mean lr x plateau_factor, down to plateau_min_scale x
        # lr. 1/6: 6e-5 -> 1e-5, Movie Gen's drop at 768 px.
        plateau_factor=1 / 6, plateau_patience=1000, plateau_window=100, plateau_min_scale=0.0,
        # Which loss: "train_loss" (windows of plateau_window steps) or "validation_loss" (the
        # phase's held-out loss at each validation, <phase>_train.validate_every; the paper's).
        plateau_on="train_loss",
        # The step's batch runs as this many equal micro-batches, gradients summed, one update.
        accumulation_steps=1,
        # EMA of the parameters, used for sampling and evaluation; 0 = off. Movie Gen's audio
        # model 0.999; mindone's video reproduction 0.9999.
        ema_decay=0.0,
        # Non-finite loss or gradients skip the update; this many in a row stop the run
        # (0: never stop; the skip counter is then not kept in the optimizer state).
        max_consecutive_skips=10))
