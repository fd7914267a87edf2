"""The sweep's PNGs (matplotlib, no display needed): each metric against the swept value
(SWEEP_OUT/<metric>.png, one line per setting of the other axes), and the runs' loss curves
overlaid (SWEEP_OUT/loss_curves.png: validation loss where a run logged it, else training)."""
import numbers
import os

from matplotlib.figure import Figure

from mgen_jax.sweeps.run_metrics import VALIDATION_PHASE, loss_curve, read_metrics_lines
from mgen_jax.sweeps.runs import axis_order

LOSS_CURVES_FILE = "loss_curves.png"


def metric_png_name(metric: str) -> str:
    """'eval/accuracy.all' -> 'eval_accuracy.all.png'."""
    return metric.replace("/", "_") + ".png"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def plot_metric(sweep, rows, metric: str, path: str) -> bool:
    """`metric` against sweep.x_axis; False (nothing written) when no run has a number for it.
    A numeric axis is plotted to scale, any other in the order of its values."""
    x_key = sweep.x_axis
    others = axis_order(sweep)[1:]
    rows = [r for r in rows if _is_number(r[metric])]
    if not rows:
        return False
    numeric_x = all(_is_number(r[x_key]) for r in rows)
    categories = list(dict.fromkeys(str(r[x_key]) for r in rows))
    groups: dict[str, list] = {}
    for row in rows:
        label = ", ".join(f"{k}={row[k]}" for k in others)
        x = row[x_key] if numeric_x else categories.index(str(row[x_key]))
        groups.setdefault(label, []).append((x, row[metric]))
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, points in groups.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                label=label or None)
    if not numeric_x:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} vs {x_key}")
    ax.grid(alpha=0.3)
    if any(groups):
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return True


def plot_loss_curves(curves: dict, path: str) -> bool:
    """curves: {label: (phase, steps, losses)}; False when there is no curve."""
    if not curves:
        return False
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    phases = {phase for phase, _, _ in curves.values()}
    for label, (phase, steps, losses) in curves.items():
        mixed = len(phases) > 1 and phase != VALIDATION_PHASE
        ax.plot(steps, losses, label=f"{label} (training loss)" if mixed else label,
                marker="o" if len(steps) < 20 else None)  # a short curve shows its points
    ax.set_xlabel("step")
    which = "validation" if phases == {VALIDATION_PHASE} else (
        "training" if VALIDATION_PHASE not in phases else "validation / training")
    ax.set_ylabel(f"{which} loss")
    ax.set_title(f"DiT {which} loss per run" + ("" if VALIDATION_PHASE in phases
                                                  else " (no validation loss logged)"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return True


def run_curves(sweep, runs, out: str, training_workdir) -> dict:
    """{label: curve} of every run with a logged loss; a sample sweep's runs share the base's
    one curve, plotted once."""
    if sweep.mode == "sample":
        curve = loss_curve(read_metrics_lines(training_workdir(sweep, out, runs[0].name)))
        return {"base (every run samples it)": curve} if curve else {}
    curves = {}
    for run in runs:
        curve = loss_curve(read_metrics_lines(training_workdir(sweep, out, run.name)))
        if curve:
            curves[run.name] = curve
    return curves


def write_plots(sweep, runs, rows, out: str, training_workdir) -> list[str]:
    """Every PNG that has something to show; returns their paths."""
    written = []
    for metric in sweep.metrics:
        path = os.path.join(out, metric_png_name(metric))
        if plot_metric(sweep, rows, metric, path):
            written.append(path)
    path = os.path.join(out, LOSS_CURVES_FILE)
    if plot_loss_curves(run_curves(sweep, runs, out, training_workdir), path):
        written.append(path)
    return written
