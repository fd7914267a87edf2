"""AdamW with linear warm-up, cosine decay and global-norm clipping, from an optimizer
sub-config (configs/optimizer.py) and the phase's number of steps."""
import optax


def learning_rate_schedule(optimizer_cfg, total_steps: int) -> optax.Schedule:
    o = optimizer_cfg
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.lr, warmup_steps=max(o.warmup_steps, 1),
        decay_steps=max(total_steps, o.warmup_steps + 1), end_value=o.lr * o.end_lr_fraction)


def make_optimizer(optimizer_cfg, total_steps: int) -> optax.GradientTransformation:
    o = optimizer_cfg
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip),
        optax.adamw(learning_rate_schedule(o, total_steps), b1=o.b1, b2=o.b2, eps=o.eps,
                    weight_decay=o.weight_decay))
