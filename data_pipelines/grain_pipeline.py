"""Grain input pipeline over the Shapes ArrayRecord shards.

ArrayRecord source -> MapDataset -> this process's slice [i::n] -> seeded
shuffle, repeated forever with a fresh order each epoch -> decode (+ optional
per-record transform, e.g. tokenization) -> IterDataset with threaded reads
-> fixed-size batches -> background-thread prefetch.

Every step is deterministic given (seed, process_index, process_count), and
the iterator's `get_state()` / `set_state()` resume exactly, so the state can
be saved with a training checkpoint.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import grain
import numpy as np

from data_pipelines.shapes_writer import decode_record, shard_paths

RecordTransform = Callable[[dict], dict]


def _stack_batch(records: Sequence[dict]) -> dict:
    """Stack each field along a new batch axis; strings become a numpy str array."""
    return {key: np.stack([np.asarray(record[key]) for record in records])
            for key in records[0]}


def make_train_dataset(data_dir: str | os.PathLike, *, batch_size: int, seed: int,
                       process_index: int = 0, process_count: int = 1,
                       transform: RecordTransform | None = None,
                       decode: Callable[[bytes], dict] = decode_record,
                       prefetch_threads: int = 2,
                       prefetch_batches: int = 2) -> grain.IterDataset:
    """The infinite, batched training IterDataset for one process.

    Batches are dicts of numpy arrays: `video` uint8 [B, T, H, W, 3],
    `caption` str [B], `colour`/`shape`/`direction` str [B], `index` int [B],
    plus whatever `transform` adds. Incomplete batches are dropped. `decode` turns one stored
    record into a dict (default: Shapes video records; precomputed latents pass their own).
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    source = grain.sources.ArrayRecordDataSource(shard_paths(data_dir))
    records = grain.MapDataset.source(source)[process_index::process_count]
    if len(records) < batch_size:
        raise ValueError(f"process {process_index} has {len(records)} records, "
                         f"fewer than one batch of {batch_size}")
    # repeat() re-seeds the upstream shuffle per epoch: a new order every epoch.
    records = records.shuffle(seed=seed).repeat(None).map(decode)
    if transform is not None:
        records = records.map(transform)
    read_options = grain.ReadOptions(num_threads=prefetch_threads,
                                     prefetch_buffer_size=max(2 * batch_size, 16))
    batches = records.to_iter_dataset(read_options).batch(
        batch_size, drop_remainder=True, batch_fn=_stack_batch)
    return grain.experimental.ThreadPrefetchIterDataset(
        batches, prefetch_buffer_size=prefetch_batches)


def make_train_iterator(data_dir: str | os.PathLike, *, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1,
                        transform: RecordTransform | None = None,
                        decode: Callable[[bytes], dict] = decode_record,
                        prefetch_threads: int = 2,
                        prefetch_batches: int = 2) -> grain.DatasetIterator:
    """Iterator over `make_train_dataset`; supports get_state() / set_state()."""
    return iter(make_train_dataset(
        data_dir, batch_size=batch_size, seed=seed, process_index=process_index,
        process_count=process_count, transform=transform, decode=decode,
        prefetch_threads=prefetch_threads, prefetch_batches=prefetch_batches))
