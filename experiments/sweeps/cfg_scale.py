"""Classifier-free guidance scale at sampling, on the quickstart model: trained once, sampled
at each scale (no retraining).

    mgen sweep --sweep=experiments/sweeps/cfg_scale.py --out=runs/sweep_cfg

trains experiments/quickstart.py into runs/sweep_cfg/base (~20 min on a 2-core CPU), then
evaluates the held-out prompts once per scale into runs/sweep_cfg/guidance_scale-<s>/ (~40 s
each) and writes results.csv / results.md / eval_accuracy.*.png: held-out attribute accuracy
against the scale. Reuse a model already trained with `--sweep.base_workdir=runs/quickstart`.
"""


def get_sweep():
    return dict(
        base="experiments/quickstart.py",
        mode="sample",
        # 1.0 is no guidance (the conditional velocity alone); the quickstart evaluates at 5.0.
        axes=dict(eval=dict(guidance_scale=(1.0, 2.0, 3.5, 5.0, 7.5, 10.0))),
        metrics=("eval/accuracy.all", "eval/accuracy.colour", "eval/accuracy.shape",
                 "eval/accuracy.direction"),
    )
