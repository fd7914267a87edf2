"""DiT size on the quickstart, as Movie Gen's scaling study does at pod scale: the whole job
retrained with each `dit.size` preset (configs/registries.py: tiny, small, base; 1b, 5b and 30b
are the same ladder for TPU slices, e.g. with --print-launch and a pod experiment as the base).

    mgen sweep --sweep=experiments/sweeps/dit_size.py --out=runs/sweep_size

The table has each run's parameter count and analytic train FLOPs per token (model.json), its
final training and validation losses and held-out accuracy; the PNGs plot them against the
size and overlay the validation-loss curves.
"""


def get_sweep():
    return dict(
        base="experiments/quickstart.py",
        mode="train",
        axes=dict(dit=dict(size=("tiny", "small", "base"))),
        metrics=("model/dit.params", "model/dit.train_flops_per_token", "dit/loss",
                 "dit_val/loss", "eval/accuracy.all"),
    )
