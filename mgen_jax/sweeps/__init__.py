"""`mgen sweep`: ablations as a list (or product) of config overrides on one base experiment.

    spec.py        the sweep file (experiments/sweeps/NAME.py: get_sweep()) and its validation
    runs.py        a sweep's runs: their override sets and stable folder names
    launch.py      the command line of each run (local subprocess, or printed for TPU VMs)
    sample_run.py  a sampling-only run's folder: the trained base's checkpoints + its own config
    runner.py      runs one after another, skipping finished ones (a killed sweep resumes)
    run_metrics.py what a run's folder measured (eval.json, metrics.jsonl)
    results.py     results.csv / results.md;  plots.py: the PNGs

Sits just below the CLI: it reads configs and workdirs and starts `mgen train` / `mgen eval`
as subprocesses; it builds no model and opens no device itself.
"""
