"""What a run measured: keys of its eval.json, the last logged values of its metrics.jsonl, what
its model is (model.json: parameters, FLOPs per token), and its loss curve. Anything absent reads
as None (a run not finished yet, a key another job does not log): the results table shows an
empty cell instead of failing."""
import json
import os

from mgen_jax.sweeps.spec import EVAL_SOURCE, MODEL_SOURCE
from mgen_jax.workdir import eval_report_path, model_facts_path

METRICS_FILE = "metrics.jsonl"
VALIDATION_PHASE = "dit_val"  # {"phase": "dit_val", "step": N, "loss": mean over held-out, ...}
TRAINING_PHASE = "dit"        # the fallback curve when a run logged no validation loss


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_eval(folder: str) -> dict | None:
    return _read_json(eval_report_path(folder))


def read_model_facts(workdir: str) -> dict | None:
    return _read_json(model_facts_path(workdir))


def read_metrics_lines(workdir: str) -> list[dict]:
    """Every parsable line of the workdir's metrics.jsonl (a line cut by a kill is skipped)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    lines = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                lines.append(record)
    return lines


def _dig(report, dotted: str):
    for part in dotted.split("."):
        if not isinstance(report, dict) or part not in report:
            return None
        report = report[part]
    return report


def metric_value(metric: str, report: dict | None, lines: list[dict], model: dict | None = None):
    """`eval/a.b` -> report["a"]["b"]; `model/a.b` -> model["a"]["b"]; `<phase>/<key>` -> the
    last value of key logged in that phase (highest step); None where there is none."""
    source, _, key = metric.partition("/")
    if source == EVAL_SOURCE:
        return _dig(report, key)
    if source == MODEL_SOURCE:
        return _dig(model, key)
    logged = [r for r in lines if r.get("phase") == source and key in r]
    return max(logged, key=lambda r: r.get("step", 0))[key] if logged else None


def loss_curve(lines: list[dict]) -> tuple[str, list, list] | None:
    """(phase, steps, losses) of the validation loss, else of the training loss; None if
    neither was logged."""
    for phase in (VALIDATION_PHASE, TRAINING_PHASE):
        points = sorted((r["step"], r["loss"]) for r in lines
                        if r.get("phase") == phase and "step" in r and "loss" in r)
        if points:
            return phase, [s for s, _ in points], [v for _, v in points]
    return None
