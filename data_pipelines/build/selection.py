"""Which curated clips a build keeps and which shard each goes to, decided once over all clips.

Input: one (source_id, bucket, phash) per curated clip, from every worker. The decision must
not depend on the runner, the worker count or the order clips arrive in, so everything here
works on the clips sorted by source_id:

  near-duplicates (cfg.dedup)  a clip whose hashes lie within cfg.max_hamming bits of a kept
                               clip's is dropped; the kept one is the smallest source_id
  balancing (cfg.balance)      cluster-balanced resampling over the hash features (seeded)
  sharding                     a bucket's kept clips, in source_id order, are cut into
                               ceil(n / records_per_shard) contiguous, near-equal shards
"""
from __future__ import annotations

import math

import numpy as np

from data_pipelines.curation.balance import cluster_balance_keep, hash_features
from data_pipelines.curation.phash import near_duplicate


def plan_clips(entries, cfg) -> dict:
    """entries: iterable of (source_id, bucket, phash uint64 [k]).
    Returns {"drop": {source_id: [reason, detail]}, "shard": {source_id: [index, count]}}."""
    entries = sorted(entries, key=lambda e: e[0])
    drop = {}
    if cfg.dedup:
        for dropped, kept in near_duplicates([(e[0], e[2]) for e in entries],
                                             cfg.max_hamming).items():
            drop[dropped] = ["duplicate", f"near-duplicate of {kept} (perceptual hashes within "
                                          f"{cfg.max_hamming} bits)"]
    if cfg.balance:
        remaining = [e for e in entries if e[0] not in drop]
        if remaining:
            features = np.stack([hash_features(e[2]) for e in remaining])
            keep = cluster_balance_keep(features, cfg.balance_clusters, cfg.seed)
            for entry, kept in zip(remaining, keep):
                if not kept:
                    drop[entry[0]] = ["balanced_out", "dropped by cluster-balanced resampling "
                                                      f"({cfg.balance_clusters} clusters)"]
    by_bucket = {}
    for source_id, bucket, _ in entries:
        if source_id not in drop:
            by_bucket.setdefault(bucket, []).append(source_id)
    shard = {}
    for source_ids in by_bucket.values():
        count = math.ceil(len(source_ids) / cfg.records_per_shard)
        for position, source_id in enumerate(source_ids):
            shard[source_id] = [position * count // len(source_ids), count]
    return {"drop": drop, "shard": shard}


def near_duplicates(hashed, max_hamming: int) -> dict[str, str]:
    """{dropped source_id: the kept source_id it duplicates} over (source_id, phash) pairs in
    source_id order: each clip is compared with the clips kept so far, so of a group of
    near-duplicates the smallest source_id stays.

    All pairs, O(n^2) hash comparisons: instant for the thousands of clips of a CPU build. At
    millions of clips, first group candidates by bands of hash bits (two hashes within d bits
    agree exactly on at least one of d + 1 bands) with a GroupByKey, then compare within groups.
    """
    kept, dropped = [], {}
    for source_id, phash in hashed:
        match = next((k for k, h in kept if near_duplicate(phash, h, max_hamming)), None)
        if match is None:
            kept.append((source_id, phash))
        else:
            dropped[source_id] = match
    return dropped
