"""`build_dataset`: what the driver of `mgen data build` does around the Beam pipeline.

  1. check the config, open the source, list its items, fingerprint the build;
  2. OUT already holds this build: done ("already built"); another build, or other files:
     refused, nothing touched;
  3. run the pipeline (pipeline.py) into a temporary sibling of OUT, with a progress bar under
     local runners;
  4. write manifest.json and report.json from what the workers emitted, then rename the
     temporary directory onto OUT, so OUT is either absent or a complete build.

The output lives on a filesystem the driver and the workers share (local disk for the
DirectRunner; a mounted shared disk for a cluster runner).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from data_pipelines.build.build_config import config_to_dict, validate_build_config
from data_pipelines.build.pipeline import ERROR_REASON, REJECTED_PREFIX, SHARDS_PREFIX, add_build
from data_pipelines.build.progress import LOCAL_RUNNERS, progress_bar
from data_pipelines.build.report import (build_fingerprint, make_manifest, make_report,
                                         summarize)
from data_pipelines.build.sources import open_source
from data_pipelines.clip_records import MANIFEST_NAME, REPORT_NAME

DEFAULT_RUNNER = "DirectRunner"
_SCRATCH = ".beam"  # inside the temporary directory; removed before the rename


def build_dataset(source: str, out_dir: str, cfg, *, beam_args=(), tfds_data_dir: str | None = None,
                  show_progress: bool = True) -> dict:
    """Build (or find) the curated dataset of `source` in out_dir; returns the report's summary
    (counts, no per-item list) with "already_built" saying whether it was there before.
    beam_args: Beam pipeline flags (--runner=..., --direct_num_workers=N, ...)."""
    cfg = validate_build_config(cfg)
    options, runner = pipeline_options(beam_args)
    src = open_source(source, tfds_data_dir=tfds_data_dir)
    items = src.items(cfg)
    config = config_to_dict(cfg)
    fingerprint = build_fingerprint(config, src.describe(), items)
    out = Path(out_dir).absolute()
    existing = existing_build(out, fingerprint)
    if existing is not None:
        return summarize(existing, str(out), already_built=True)

    import apache_beam as beam
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        results_dir = tmp / _SCRATCH / "results"
        progress_dir = None
        if show_progress and runner.lower() in LOCAL_RUNNERS:
            progress_dir = tmp / _SCRATCH / "progress"
            progress_dir.mkdir(parents=True)
        pipeline = beam.Pipeline(options=options)
        add_build(pipeline, items, src, cfg.to_json(sort_keys=True), out_dir=str(tmp),
                  results_dir=str(results_dir),
                  progress_dir=None if progress_dir is None else str(progress_dir))
        with progress_bar(None if progress_dir is None else str(progress_dir), len(items)):
            pipeline.run().wait_until_finish()
        shards = _read_jsonl(results_dir, SHARDS_PREFIX)
        rejected = _read_jsonl(results_dir, REJECTED_PREFIX)
        shutil.rmtree(tmp / _SCRATCH)
        _fail_if_every_item_errored(items, shards, rejected)
        manifest = make_manifest(config=config, source=source, fingerprint=fingerprint,
                                 shards=shards)
        report = make_report(seen=len(items), manifest=manifest, shards=shards,
                             rejected=rejected)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        (tmp / REPORT_NAME).write_text(json.dumps(report, indent=2))
        os.chmod(tmp, 0o755)  # mkdtemp made it private; a dataset is for everyone to read
        if out.exists():
            out.rmdir()  # empty (existing_build checked): rename onto it fails on some systems
        try:
            os.rename(tmp, out)
        except OSError:
            # Another build of the same source won the race: accept it if it is this build.
            existing = existing_build(out, fingerprint)
            if existing is None:
                raise
            return summarize(existing, str(out), already_built=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summarize(report, str(out))


def pipeline_options(beam_args):
    """(PipelineOptions, runner name) from Beam flags; the DirectRunner unless --runner says
    otherwise. A flag Beam does not know is an error here (Beam itself only warns)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    options = PipelineOptions(list(beam_args))
    unknown = (set(options.get_all_options(retain_unknown_options=True))
               - set(options.get_all_options()))
    if unknown:
        raise ValueError("unknown Beam pipeline option(s): "
                         + ", ".join(f"--{name}" for name in sorted(unknown)))
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = DEFAULT_RUNNER
    return options, standard.runner


def existing_build(out: Path, fingerprint: str) -> dict | None:
    """The report of the build already in `out` when it is this build; None when `out` is
    absent or an empty directory; an error naming `out` for anything else."""
    manifest_path = out / MANIFEST_NAME
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("fingerprint") != fingerprint:
            raise FileExistsError(
                f"{out} already holds a different build (source {manifest.get('source')!r}, "
                f"fingerprint {str(manifest.get('fingerprint'))[:12]}, this one "
                f"{fingerprint[:12]}); choose another --out or delete it")
        return json.loads((out / REPORT_NAME).read_text())
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory or a build (no "
                              f"{MANIFEST_NAME}); refusing to write into it")
    return None


def _read_jsonl(folder: Path, prefix: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, prefix + "*"))):
        with open(path) as f:
            rows.extend(json.loads(line) for line in f if line.strip())
    return rows


def _fail_if_every_item_errored(items, shards, rejected) -> None:
    """Bad media is skipped; every item failing unexpectedly is a broken set-up, not bad data."""
    errors = [r for r in rejected if r["reason"] == ERROR_REASON]
    if items and not shards and len({r["source_id"] for r in errors}) == len(items):
        raise RuntimeError(f"every item failed to curate, e.g. {errors[0]['source_id']}: "
                           f"{errors[0]['detail']}")
