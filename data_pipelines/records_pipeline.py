"""Grain training loader over a built, bucketed dataset (clip records or latents): every batch
holds clips of one bucket, so it has one shape, and buckets are mixed by kind (images : videos).

One stream per bucket:
  that bucket's ArrayRecord shards -> MapDataset -> this process's records [i::n]
  -> shuffle (seed offset by a stable hash of the bucket name) repeated forever
  -> decode (+ transform) -> IterDataset with threaded reads -> batches of the bucket's size.
The streams are mixed by grain's IterDataset.mix, keyed by bucket name, then prefetched in a
background thread. The iterator's get_state() holds every bucket's position and the mix's, so
a training checkpoint resumes exactly; everything is deterministic given (seed, process_index,
process_count).
"""
from __future__ import annotations

import functools
import os
import sys
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import grain
import numpy as np

from data_pipelines.bucket_batching import (kind_weights, load_manifest, manifest_buckets,
                                             mixture_weights)
from data_pipelines.clip_records import decode_clip_record

RecordTransform = Callable[[dict], dict]


def _stack_bucket_batch(records: Sequence[dict], *, bucket: str) -> dict:
    """Stack each field along a new batch axis (strings become a numpy str array) and name the
    batch's bucket in `bucket`, whatever the decoder or transform kept."""
    batch = {key: np.stack([np.asarray(record[key]) for record in records])
             for key in records[0]}
    batch["bucket"] = np.full(len(records), bucket)
    return batch


def _bucket_seed(seed: int, bucket: str) -> int:
    # crc32 is stable across runs and machines (unlike hash()); buckets get unrelated orders.
    return (seed + zlib.crc32(bucket.encode())) % 2**32


def make_records_dataset(data_dir: str | os.PathLike, *, batch_sizes: Mapping[str, int],
                         seed: int, mixture: Mapping[str, float] | None = None,
                         process_index: int = 0, process_count: int = 1,
                         decode: Callable[[bytes], dict] = decode_clip_record,
                         transform: RecordTransform | None = None,
                         prefetch_threads: int = 2,
                         prefetch_batches: int = 2,
                         small_buckets: str = "drop",
                         only_buckets: Sequence[str] | None = None,
                         holdout: Mapping[str, int] | None = None) -> grain.IterDataset:
    """The infinite, mixed training IterDataset of one process.

    batch_sizes: bucket name -> batch size (see bucket_batching.bucket_batch_sizes); needed for
      every bucket the mixture uses.
    mixture: kind weights, e.g. {"images": 1, "videos": 10}: the share of batches of each kind
      (see bucket_batching.mixture_weights); a kind left out is not read. None: the dataset's
      own proportions.
    small_buckets: what happens to a bucket with fewer records for this process than one batch:
      "drop" (with a warning; a large dataset loses nothing that matters) or "repeat" (its
      batches repeat its clips, with a warning; small folders would otherwise lose most buckets).
    only_buckets: read these buckets only (None: all); the mixture weighs what is left.
    holdout: bucket name -> how many records at the bucket's end are never trained on (the
      validation set, `records_holdout_batches`).
    Batches are dicts of numpy arrays with a leading batch axis, from `decode` (+ `transform`),
    plus `bucket` str [B].
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if small_buckets not in ("drop", "repeat"):
        raise ValueError(f"small_buckets={small_buckets!r}: expected 'drop' or 'repeat'")
    buckets = manifest_buckets(load_manifest(data_dir))
    kinds = None if mixture is None else kind_weights(mixture)
    # Buckets of an unwanted kind and empty ones (a build's table lists every bucket) are not read.
    wanted = {name for name, b in buckets.items()
              if (kinds is None or b["kind"] in kinds) and b["num_records"] > 0
              and (only_buckets is None or name in only_buckets)}
    records, batches_per_epoch = {}, {}
    for name in (n for n in buckets if n in wanted):
        if name not in batch_sizes:
            raise ValueError(f"no batch size for bucket {name} (batch_sizes has "
                             f"{sorted(batch_sizes)})")
        paths = [str(Path(data_dir) / path) for path in buckets[name]["shards"]]
        source = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths))
        mine = _without_holdout(source, name, (holdout or {}).get(name, 0))
        mine = mine[process_index::process_count]
        if len(mine) < batch_sizes[name]:
            action = "dropped" if small_buckets == "drop" else "kept, its batches repeat clips"
            warnings.warn(f"bucket {name} {action}: process {process_index} has {len(mine)} "
                          f"records, fewer than one batch of {batch_sizes[name]}")
            if small_buckets == "drop" or len(mine) == 0:
                continue
        records[name] = mine
        batches_per_epoch[name] = len(mine) / batch_sizes[name]
    weights = mixture_weights(buckets, batches_per_epoch, mixture)

    streams = {}
    for name, weight in weights.items():
        stream = _shuffled_forever(records[name], _bucket_seed(seed, name)).map(decode)
        if transform is not None:
            stream = stream.map(transform)
        # One batch of read-ahead per bucket: many buckets of large clips would otherwise hold
        # many batches in memory at once.
        read_options = grain.ReadOptions(
            num_threads=prefetch_threads,
            prefetch_buffer_size=max(batch_sizes[name], prefetch_threads))
        streams[name] = stream.to_iter_dataset(read_options).batch(
            batch_sizes[name], drop_remainder=True,
            batch_fn=functools.partial(_stack_bucket_batch, bucket=name))
    # Keyed by bucket name, so a checkpoint restores each bucket's position by name.
    mixed = grain.IterDataset.mix(streams, weights)
    return grain.experimental.ThreadPrefetchIterDataset(
        mixed, prefetch_buffer_size=prefetch_batches)


def _without_holdout(records: grain.MapDataset, bucket: str, holdout: int) -> grain.MapDataset:
    if not 0 <= holdout < len(records):
        raise ValueError(f"holdout {holdout} must be in [0, {len(records)}) records of bucket "
                         f"{bucket}")
    return records[:len(records) - holdout]


def records_holdout_batches(data_dir: str | os.PathLike, *, bucket: str, holdout: int,
                            batch_size: int, process_index: int = 0, process_count: int = 1,
                            decode: Callable[[bytes], dict] = decode_clip_record) -> list[dict]:
    """The validation set of a built dataset: the last `holdout` records of `bucket` (those
    make_records_dataset(holdout={bucket: holdout}) never trains on) as fixed global batches of
    process_count x batch_size (a last, smaller batch dropped), this process's rows of each."""
    buckets = manifest_buckets(load_manifest(data_dir))
    if bucket not in buckets:
        raise ValueError(f"no bucket {bucket} in {data_dir} (buckets: {sorted(buckets)})")
    paths = [str(Path(data_dir) / path) for path in buckets[bucket]["shards"]]
    source = grain.sources.ArrayRecordDataSource(paths)
    total, global_batch = len(source), batch_size * process_count
    if not global_batch <= holdout < total:
        raise ValueError(f"holdout {holdout} of bucket {bucket} must hold one global batch of "
                         f"{global_batch} and leave records to train on (it has {total})")
    first, out = total - holdout, []
    for start in range(first, first + holdout // global_batch * global_batch, global_batch):
        lo = start + process_index * batch_size
        out.append(_stack_bucket_batch([decode(source[i]) for i in range(lo, lo + batch_size)],
                                       bucket=bucket))
    return out


# Grain's index shuffle costs ~5 ms an index on 5 records and ~40 us on 1,000 (measured): small
# buckets (a folder's) are shuffled by a numpy permutation per epoch instead, same semantics.
_MIN_GRAIN_SHUFFLE = 1024


class _PermutedEpochs(grain.MapDataset):
    """`parent` repeated forever, each epoch in its own permutation seeded by (seed, epoch)."""

    def __init__(self, parent: grain.MapDataset, seed: int):
        super().__init__(parent)
        self._seed, self._size, self._epoch = seed, len(parent), (None, None)

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, position = divmod(index, self._size)
        cached, order = self._epoch
        if cached != epoch:  # threads may both compute it: the same permutation, no harm
            order = np.random.default_rng([self._seed, epoch]).permutation(self._size)
            self._epoch = (epoch, order)
        return self._parent[int(order[position])]


def _shuffled_forever(records: grain.MapDataset, seed: int) -> grain.MapDataset:
    if len(records) < _MIN_GRAIN_SHUFFLE:
        return _PermutedEpochs(records, seed)
    # repeat() re-seeds the upstream shuffle per epoch: a new order every epoch.
    return records.shuffle(seed=seed).repeat(None)


def make_records_iterator(data_dir: str | os.PathLike, **kwargs) -> grain.DatasetIterator:
    """Iterator over `make_records_dataset(data_dir, **kwargs)`; supports get_state() /
    set_state()."""
    return iter(make_records_dataset(data_dir, **kwargs))
