"""Cluster-balanced resampling: web video over-represents a few kinds of content; Movie Gen
clusters its clips and keeps each with probability proportional to 1 / sqrt(cluster size), so
common kinds are thinned and rare ones kept whole. Seeded throughout: a rebuild keeps the same
items."""
from __future__ import annotations

import numpy as np

KMEANS_ITERATIONS = 20  # fixed, not "until converged": the result must not depend on timing


def hash_features(phash: np.ndarray) -> np.ndarray:
    """float32 [64 * k]: the bits of k uint64 perceptual hashes, so Euclidean distance between
    feature vectors is sqrt(Hamming distance)."""
    as_bytes = np.asarray(phash, np.uint64).reshape(-1).astype(">u8").view(np.uint8)
    return np.unpackbits(as_bytes).astype(np.float32)


def kmeans(features: np.ndarray, clusters: int, seed: int,
           iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """int [N]: cluster of each row of float [N, D], Lloyd's algorithm from k-means++ centres
    picked with `seed`. A cluster that empties keeps its previous centre."""
    features = np.asarray(features, np.float64)
    clusters = max(1, min(clusters, len(features)))
    centres = _kmeans_plus_plus(features, clusters, np.random.default_rng(seed))
    labels = np.zeros(len(features), np.int64)
    for _ in range(iterations):
        labels = np.argmin(_squared_distances(features, centres), axis=1)  # ties: lowest index
        for k in range(clusters):
            members = features[labels == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    return labels


def _squared_distances(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """float [N, K] squared Euclidean distances, without an [N, K, D] intermediate."""
    distances = ((features ** 2).sum(1)[:, None] - 2 * features @ centres.T
                 + (centres ** 2).sum(1)[None, :])
    return np.maximum(distances, 0.0)  # rounding can dip below 0


def _kmeans_plus_plus(features: np.ndarray, clusters: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Initial centres spread over the data: each next one drawn with probability proportional
    to its squared distance from the nearest centre so far (two centres seldom start in one
    cluster, which random rows often do)."""
    centres = [features[rng.integers(len(features))]]
    for _ in range(clusters - 1):
        nearest = _squared_distances(features, np.array(centres)).min(axis=1)
        total = nearest.sum()
        if total == 0:  # every row sits on a centre already: any row will do
            centres.append(features[rng.integers(len(features))])
        else:
            centres.append(features[rng.choice(len(features), p=nearest / total)])
    return np.array(centres)


def index_uniforms(count: int, seed: int) -> np.ndarray:
    """float64 [count] in [0, 1): a fixed pseudo-random number per index (the SplitMix64 output
    for state seed + (index + 1) x golden ratio), the same whatever else is in the batch."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        z = (np.uint64(seed & (2**64 - 1))
             + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2 ** 53)


def cluster_balance_keep(features: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    """bool [N]: which items to keep. k-means into `clusters`, then keep an item with
    probability (1 / sqrt(its cluster's size)) / (the largest such), so the smallest cluster is
    kept whole; the draw is a seeded hash of the item's index."""
    features = np.asarray(features)
    if len(features) == 0:
        return np.zeros((0,), bool)
    labels = kmeans(features, clusters, seed)
    sizes = np.bincount(labels)[labels]
    probability = 1.0 / np.sqrt(sizes)
    probability /= probability.max()
    return index_uniforms(len(features), seed) < probability
