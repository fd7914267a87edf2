"""DiT width on the quickstart: the whole job retrained at each width (the MLP kept at the
tiny preset's 2.75x width, the 4 heads widening with it).

    mgen sweep --sweep=experiments/sweeps/dit_width.py --out=runs/sweep_width

Each run is a full quickstart (`mgen train` then its evaluation, ~20 min each on a 2-core CPU)
in runs/sweep_width/width-<w>_mlp_dim-<m>/; the table has held-out accuracy and the final
training and validation losses, the PNGs plot them against the width and overlay the runs'
validation-loss curves. On TPU VMs, `--print-launch` prints the three `mgen train` lines.
"""


def get_sweep():
    return dict(
        base="experiments/quickstart.py",
        mode="train",
        combine="zip",  # width and MLP width move together
        axes=dict(dit=dict(width=(64, 128, 192), mlp_dim=(176, 352, 528))),
        x_axis="dit.width",
        metrics=("eval/accuracy.all", "eval/accuracy.direction", "eval/accuracy.shape",
                 "dit/loss", "dit_val/loss"),
    )
