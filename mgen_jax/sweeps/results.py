"""The results table of a sweep: one row per run (its name, the value of each axis, each chosen
metric, its status) as SWEEP_OUT/results.csv and SWEEP_OUT/results.md."""
import csv
import io
import os

from mgen_jax.sweeps.launch import base_workdir, run_dir
from mgen_jax.sweeps.run_metrics import (metric_value, read_eval, read_metrics_lines,
                                         read_model_facts)
from mgen_jax.sweeps.runs import axis_order

CSV_FILE, MARKDOWN_FILE = "results.csv", "results.md"


def training_workdir(sweep, out: str, name: str) -> str:
    """Where a run's metrics.jsonl is: its own workdir, or (mode=sample) the shared base's."""
    return base_workdir(sweep, out) if sweep.mode == "sample" else run_dir(out, name)


def result_rows(sweep, runs, out: str, statuses: dict | None = None) -> list[dict]:
    """statuses: {run name: status} of the runs this invocation attempted; the others read
    'done' when their eval.json exists, else 'not run'."""
    statuses = statuses or {}
    rows = []
    for run in runs:
        report = read_eval(run_dir(out, run.name))
        workdir = training_workdir(sweep, out, run.name)
        lines, model = read_metrics_lines(workdir), read_model_facts(workdir)
        status = statuses.get(run.name, "done" if report is not None else "not run")
        rows.append({"run": run.name, **dict(run.values),
                     **{m: metric_value(m, report, lines, model) for m in sweep.metrics},
                     "status": status})
    return rows


def columns(sweep) -> list[str]:
    return ["run", *axis_order(sweep), *sweep.metrics, "status"]


def _csv_cell(value) -> str:
    return "" if value is None else str(value)


def _markdown_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and len(repr(value)) > 8:  # 0.08333333 -> 0.08333, 7.5 stays
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def csv_text(sweep, rows) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns(sweep))
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in columns(sweep)])
    return buffer.getvalue()


def markdown_text(sweep, rows) -> str:
    cols = columns(sweep)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_markdown_cell(row[c]) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"  # parallel `--only` runs may write the table together
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_tables(sweep, rows, out: str) -> list[str]:
    paths = [os.path.join(out, CSV_FILE), os.path.join(out, MARKDOWN_FILE)]
    _write_atomically(paths[0], csv_text(sweep, rows))
    _write_atomically(paths[1], markdown_text(sweep, rows))
    return paths
