"""What a finished build says about itself: manifest.json (what is in the dataset and how it
was made) and report.json (what happened to every item), both from what the pipeline emitted
(shard infos and rejections), plus the fingerprint that tells one build from another."""
from __future__ import annotations

import collections
import hashlib
import json

from data_pipelines.clip_records import CLIPS_FORMAT


def build_fingerprint(config: dict, source: str, items: list[dict]) -> str:
    """sha256 over the build config, the source and its sorted item list (ids, and sizes or
    captions where the source knows them): equal fingerprints mean the same build."""
    payload = json.dumps({"config": config, "source": source,
                          "items": sorted(items, key=lambda item: item["id"])},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def make_manifest(*, config: dict, source: str, fingerprint: str, shards: list[dict]) -> dict:
    """manifest.json: every bucket of the config with its record count, every shard written."""
    counts = collections.Counter()
    for shard in shards:
        counts[shard["bucket"]] += shard["num_records"]
    buckets = {b["name"]: {"kind": b["kind"], "frames": b["frames"], "height": b["height"],
                           "width": b["width"], "num_records": counts[b["name"]]}
               for b in config["buckets"]}
    return {"format": CLIPS_FORMAT, "config": config, "source": source,
            "fingerprint": fingerprint, "buckets": buckets,
            "shards": [{"path": s["path"], "bucket": s["bucket"], "num_records": s["num_records"]}
                       for s in sorted(shards, key=lambda s: s["path"])],
            "num_records": sum(counts.values())}


def make_report(*, seen: int, manifest: dict, shards: list[dict], rejected: list[dict]) -> dict:
    """report.json: counts (items seen, items with at least one record, clips and images
    written, skipped by reason, records per bucket) and every rejection, sorted."""
    per_bucket = {name: b["num_records"] for name, b in manifest["buckets"].items()
                  if b["num_records"]}
    images = sum(n for name, n in per_bucket.items()
                 if manifest["buckets"][name]["kind"] == "image")
    rejected = sorted(({"source_id": r["source_id"], "reason": r["reason"],
                        "detail": r["detail"]} for r in rejected),
                      key=lambda r: (r["source_id"], r["reason"], r["detail"]))
    return {"seen": seen,
            "items_with_records": len({item for s in shards for item in s["items"]}),
            "clips_written": manifest["num_records"] - images,
            "images_written": images,
            "skipped": dict(sorted(collections.Counter(r["reason"] for r in rejected).items())),
            "per_bucket": per_bucket,
            "rejected": rejected}


def summarize(report: dict, out_dir: str, *, already_built: bool = False) -> dict:
    """The report without its per-item list: what `mgen data build` prints."""
    summary = {"out": out_dir, "already_built": already_built}
    summary.update({k: v for k, v in report.items() if k != "rejected"})
    summary["rejected"] = len(report["rejected"])
    return summary
