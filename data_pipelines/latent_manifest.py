"""The layout and manifest of a latent dataset (data_pipelines/precompute_latents.py writes it).

  fingerprint.json                    what produced the latents (TAE step, text fields) and from
                                      which video dataset; another fingerprint = stale output
  <video shard path>                  latent records, mirroring the video dataset's shards 1:1
                                      (a built dataset's `<bucket>/shard-...` folders included)
  <video shard path>.done.json        written after the shard is in place: its record count,
                                      latent shape and statistics; the resume marker
  parts/part-<i>-of-<n>.json          process i's finished shards (with their statistics)
  manifest.json                       the merged manifest, once every shard is done

The normalisation (latent_shift, latent_scale) is merged from every shard's float64 sums in the
video manifest's shard order, so any process that computes it gets the same bits, whatever the
number of processes that wrote the shards."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from data_pipelines.bucket_batching import SINGLE_BUCKET, manifest_buckets

FORMAT_NAME = "mgen_latents_v3"
MANIFEST_NAME = "manifest.json"
FINGERPRINT_NAME = "fingerprint.json"
PARTS_DIR = "parts"
DONE_SUFFIX = ".done.json"


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def write_json_atomic(path: Path, value) -> None:
    """Whole file or nothing; several processes may write the same file (a unique temp each)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(value, indent=2))
    os.replace(tmp, path)


def part_path(out_dir: Path, process_index: int, process_count: int) -> Path:
    return out_dir / PARTS_DIR / f"part-{process_index}-of-{process_count}.json"


def done_path(out_dir: Path, shard_path: str) -> Path:
    return out_dir / f"{shard_path}{DONE_SUFFIX}"


def video_shards(video_manifest: dict) -> list[dict]:
    """The video dataset's shards, each with its bucket (Shapes has none: SINGLE_BUCKET)."""
    return [dict(s, bucket=s.get("bucket", SINGLE_BUCKET)) for s in video_manifest["shards"]]


def latents_stamp(video_manifest: dict, fingerprint: dict) -> dict:
    """fingerprint.json's content: the caller's fingerprint and the video dataset's identity."""
    return {"format": FORMAT_NAME, "fingerprint": fingerprint,
            "video": {"format": video_manifest.get("format"),
                      "shards": [[s["path"], s["num_records"]] for s in video_manifest["shards"]]}}


def is_stale(out_dir: Path, stamp: dict) -> bool:
    """True when out_dir holds latents of another TAE / text set-up / dataset, or of an older
    format (a manifest without fingerprint.json)."""
    existing = read_json(out_dir / FINGERPRINT_NAME)
    if existing is not None:
        return existing != stamp
    return (out_dir / MANIFEST_NAME).exists()


def shard_done(out_dir: Path, shard_path: str):
    """The shard's done marker (its statistics), or None when it must be (re)written."""
    if not (out_dir / shard_path).exists():
        return None
    return read_json(done_path(out_dir, shard_path))


def shard_stats(means_bf16: list[np.ndarray]) -> dict:
    """count, sum and sum of squares (float64) of the stored latent means, overall and per
    latent channel (the last axis)."""
    m = np.concatenate([np.asarray(x, np.float64).reshape(-1, x.shape[-1]) for x in means_bf16])
    sq = np.square(m)
    return {"count": int(m.size), "sum": float(m.sum()), "sum_sq": float(sq.sum()),
            "channel_sum": m.sum(axis=0).tolist(), "channel_sum_sq": sq.sum(axis=0).tolist()}


def _buckets(video_manifest: dict) -> dict:
    """The video dataset's bucket entries (Shapes: one, from its parameters), as the loader
    reads them, without the loader's shard lists."""
    if "buckets" in video_manifest:
        return video_manifest["buckets"]
    return {name: {k: v for k, v in b.items() if k not in ("name", "shards")}
            for name, b in manifest_buckets(video_manifest).items()}


def finalize_latents_manifest(out_dir: str | os.PathLike, video_manifest: dict, *,
                              write: bool = True) -> dict:
    """The merged manifest of a complete latent dataset (raises naming the missing shards
    otherwise); written to manifest.json when `write`. Any process may call it once every process
    has written its part: all get identical numbers, and the file's content is identical too."""
    out_dir = Path(out_dir)
    stamp = read_json(out_dir / FINGERPRINT_NAME)
    shards, missing = [], []
    for shard in video_shards(video_manifest):
        done = shard_done(out_dir, shard["path"])
        if done is None:
            missing.append(shard["path"])
        else:
            shards.append(done)
    if missing or stamp is None:
        parts = sorted(p.name for p in (out_dir / PARTS_DIR).glob("part-*.json"))
        raise FileNotFoundError(
            f"latents {out_dir} are incomplete: {len(missing)} of "
            f"{len(video_manifest['shards'])} shards not written yet (first: "
            f"{missing[:1]}); parts present: {parts}: a process has not finished")
    count = total = total_sq = 0.0
    channels = len(shards[0]["channel_sum"])
    c_sum, c_sum_sq = np.zeros(channels), np.zeros(channels)
    for s in shards:  # in the video manifest's order: the same sums on every process
        count += s["count"]
        total += s["sum"]
        total_sq += s["sum_sq"]
        c_sum += np.asarray(s["channel_sum"])
        c_sum_sq += np.asarray(s["channel_sum_sq"])
    if count == 0:
        raise ValueError(f"latents {out_dir}: the video dataset holds no records")
    shift = total / count
    std = max(total_sq / count - shift ** 2, 0.0) ** 0.5
    per_channel = count / channels
    c_mean = c_sum / per_channel
    c_std = np.sqrt(np.maximum(c_sum_sq / per_channel - np.square(c_mean), 0.0))

    source_buckets = _buckets(video_manifest)
    buckets = {}
    for s in shards:  # buckets without shards (no records) are left out
        b = buckets.setdefault(s["bucket"], dict(source_buckets.get(s["bucket"], {}),
                                                 num_records=0, latent_shape=s["latent_shape"]))
        if b["latent_shape"] != s["latent_shape"]:
            raise ValueError(f"latents {out_dir}: bucket {s['bucket']!r} holds latent shapes "
                             f"{b['latent_shape']} and {s['latent_shape']} ({s['path']})")
        b["num_records"] += s["num_records"]
    manifest = {
        "format": FORMAT_NAME, "fingerprint": stamp["fingerprint"],
        "source_format": video_manifest.get("format"), "dtype": "bfloat16",
        "buckets": buckets,
        "shards": [{k: s[k] for k in ("path", "bucket", "num_records")} for s in shards],
        "num_records": sum(s["num_records"] for s in shards),
        # The first bucket's, for readers of a single-shape dataset (Shapes).
        "latent_shape": shards[0]["latent_shape"],
        "latent_shift": shift, "latent_scale": 1.0 / (std + 1e-8),
        "latent_channel_mean": c_mean.tolist(), "latent_channel_std": c_std.tolist(),
    }
    if write:
        write_json_atomic(out_dir / MANIFEST_NAME, manifest)
        for orphan in out_dir.rglob("*.tmp-*"):  # shards of a killed run, since rewritten
            orphan.unlink(missing_ok=True)
    return manifest
