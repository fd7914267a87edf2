"""How a bucketed dataset is batched and mixed: the buckets a manifest declares, a batch size per
bucket (fixed, or as many clips as fit a token budget) and each bucket's mixing weight.

Pure bookkeeping over manifest.json (the layout of data_pipelines/clip_records.py, which the
latent datasets reuse with another "format"); the Grain loader is records_pipeline.py.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

MANIFEST_NAME = "manifest.json"
# Old single-shape datasets (Shapes) list shards without buckets: they read as one bucket.
SINGLE_BUCKET = "all"
# Mixture keys name kinds in the plural, as the paper speaks of its images : videos ratio.
KIND_OF_MIXTURE_KEY = {"images": "image", "videos": "video"}


def load_manifest(data_dir: str | os.PathLike) -> dict:
    """manifest.json of a dataset directory, whatever its format."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {data_dir} (missing {MANIFEST_NAME})")
    return json.loads(path.read_text())


def manifest_buckets(manifest: dict) -> dict[str, dict]:
    """Bucket name -> the manifest's bucket entry plus `name`, `kind`, `num_records` and
    `shards` (paths relative to the dataset directory), in manifest order."""
    if "buckets" not in manifest:
        shards = manifest["shards"]
        # Shapes manifests keep the clip shape under "parameters"; token budgets need it.
        parameters = manifest.get("parameters", {})
        shape = {key: parameters[key] for key in ("frames", "height", "width")
                 if key in parameters}
        kind = "image" if shape.get("frames") == 1 else "video"
        return {SINGLE_BUCKET: dict(shape, name=SINGLE_BUCKET, kind=kind,
                                    num_records=sum(s["num_records"] for s in shards),
                                    shards=[s["path"] for s in shards])}
    buckets = {}
    for name, entry in manifest["buckets"].items():
        kind = entry.get("kind") or ("image" if entry.get("frames") == 1 else "video")
        buckets[name] = dict(entry, name=name, kind=kind, shards=[], num_records=0)
    for shard in manifest["shards"]:
        if shard.get("bucket") not in buckets:
            raise ValueError(f"shard {shard['path']} belongs to bucket {shard.get('bucket')!r}, "
                             f"which the manifest does not declare (buckets: {list(buckets)})")
        bucket = buckets[shard["bucket"]]
        bucket["shards"].append(shard["path"])
        bucket["num_records"] += shard["num_records"]
    return buckets


def bucket_batch_sizes(manifest: dict, *, batch_size: int | None = None,
                       token_budget: int | None = None,
                       tokens_per_clip: Callable[[dict], int] | None = None) -> dict[str, int]:
    """Batch size of every bucket: `batch_size` for all, or floor(token_budget / tokens of one
    clip) so a batch holds at most `token_budget` tokens and loses less than one clip's worth
    (within 10% of the budget when a clip is at most 10% of it). `tokens_per_clip` gets the
    bucket entry of `manifest_buckets` (frames, height, width, kind, name). A bucket whose one
    clip exceeds the budget is an error, unless it holds no records (then it is left out)."""
    if (batch_size is None) == (token_budget is None):
        raise ValueError("give exactly one of batch_size and token_budget")
    buckets = manifest_buckets(manifest)
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return {name: int(batch_size) for name in buckets}
    if tokens_per_clip is None:
        raise ValueError("token_budget needs tokens_per_clip (bucket -> tokens of one clip)")
    sizes = {}
    for name, bucket in buckets.items():
        tokens = int(tokens_per_clip(bucket))
        if tokens < 1:
            raise ValueError(f"bucket {name}: tokens_per_clip gave {tokens}, expected >= 1")
        if tokens > token_budget:
            if bucket["num_records"] == 0:
                continue  # never read, so it needs no batch size
            raise ValueError(f"bucket {name}: one clip has {tokens} tokens, more than the "
                             f"token budget of {token_budget} per batch; raise the budget "
                             "or drop the bucket")
        sizes[name] = token_budget // tokens
    return sizes


def kind_weights(mixture: Mapping[str, float]) -> dict[str, float]:
    """{"images": 1, "videos": 10} -> {"image": 1.0, "video": 10.0}, kinds of weight 0 left out."""
    kinds = {}
    for key, weight in mixture.items():
        if key not in KIND_OF_MIXTURE_KEY:
            raise ValueError(f"mixture key {key!r}: expected one of {sorted(KIND_OF_MIXTURE_KEY)}")
        if weight < 0:
            raise ValueError(f"mixture weight of {key} is {weight}, expected >= 0")
        if weight > 0:
            kinds[KIND_OF_MIXTURE_KEY[key]] = float(weight)
    return kinds


def mixture_weights(buckets: Mapping[str, dict], batches_per_epoch: Mapping[str, float],
                    mixture: Mapping[str, float] | None) -> dict[str, float]:
    """Weight of each bucket in the mix of batches; buckets of weight 0 are left out.

    Within a kind, a bucket's weight is proportional to its batches per epoch, so every clip of
    that kind is drawn equally often; a kind's buckets together get the kind's `mixture` weight,
    so the share of batches of a kind equals its share of the mixture. Without a mixture every
    bucket weighs its batches per epoch (the dataset's own proportions). `buckets` are all the
    dataset's buckets (for error messages); `batches_per_epoch` the usable ones.
    """
    if mixture is None:
        weights = {name: float(n) for name, n in batches_per_epoch.items() if n > 0}
    else:
        weights = {}
        for kind, kind_weight in kind_weights(mixture).items():
            if not any(b["kind"] == kind and b["num_records"] > 0 for b in buckets.values()):
                raise ValueError(f"mixture asks for {kind}s but the dataset has no {kind} "
                                 f"records (buckets: {sorted(buckets)})")
            usable = {name: n for name, n in batches_per_epoch.items()
                      if buckets[name]["kind"] == kind}
            if not usable:
                raise ValueError(f"mixture asks for {kind}s but every {kind} bucket has fewer "
                                 "records than one batch for this process")
            total = sum(usable.values())
            weights.update({name: kind_weight * n / total for name, n in usable.items()})
    if not batches_per_epoch:
        raise ValueError(f"every bucket ({sorted(buckets)}) has fewer records than one batch "
                         "for this process")
    if not weights:
        raise ValueError(f"no bucket has a positive weight (mixture {mixture})")
    return weights
