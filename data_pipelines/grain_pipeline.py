"""Grain input pipeline over the Shapes ArrayRecord shards.

ArrayRecord source (less the held-out tail) -> MapDataset -> seeded shuffle,
repeated forever with a fresh order each epoch (the *global* order) -> this
process's rows of each global batch -> decode (+ optional per-record transform,
e.g. tokenization) -> IterDataset with threaded reads -> fixed-size batches ->
background-thread prefetch.

The global order depends on the seed only, and process i of n takes rows
[i*L, (i+1)*L) of every global batch of n*L records, so the global batches are
the same whatever the process count: 2 processes x 4 devices train on what 1
process x 8 devices does. The iterator's `get_state()` / `set_state()` resume
exactly, so the state can be saved with a training checkpoint.

`holdout` records at the end of the dataset are never trained on: they are the
validation set (`holdout_batches`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import grain
import numpy as np

from data_pipelines.shapes_writer import decode_record, shard_paths

RecordTransform = Callable[[dict], dict]


class GlobalBatchRows(grain.MapDataset):
    """Process `process_index`'s share of the global batches of `parent`: its element j is the
    parent's element (j // L) * n * L + process_index * L + j % L, L the per-process batch.
    Grain slices datasets by stride ([i::n]); rows of global batches need this index map."""

    def __init__(self, parent: grain.MapDataset, *, local_batch: int, process_index: int,
                 process_count: int):
        super().__init__(parent)
        self._local, self._index, self._count = local_batch, process_index, process_count

    def __len__(self) -> int:
        return len(self._parent) // (self._local * self._count) * self._local

    def __str__(self) -> str:
        return f"GlobalBatchRows(process {self._index} of {self._count}, {self._local} rows)"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        batch, row = divmod(index, self._local)
        return self._parent[(batch * self._count + self._index) * self._local + row]


def _stack_batch(records: Sequence[dict]) -> dict:
    """Stack each field along a new batch axis; strings become a numpy str array."""
    return {key: np.stack([np.asarray(record[key]) for record in records])
            for key in records[0]}


def make_train_dataset(data_dir: str | os.PathLike, *, batch_size: int, seed: int,
                       process_index: int = 0, process_count: int = 1,
                       transform: RecordTransform | None = None,
                       decode: Callable[[bytes], dict] = decode_record,
                       prefetch_threads: int = 2,
                       prefetch_batches: int = 2, holdout: int = 0) -> grain.IterDataset:
    """The infinite, batched training IterDataset for one process (batch_size: its share of
    the global batch; the global batch is process_count x batch_size).

    Batches are dicts of numpy arrays: `video` uint8 [B, T, H, W, 3],
    `caption` str [B], `colour`/`shape`/`direction` str [B], `index` int [B],
    plus whatever `transform` adds. Incomplete batches are dropped. `decode` turns one stored
    record into a dict (default: Shapes video records; precomputed latents pass their own).
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    records = _training_records(data_dir, holdout)
    if len(records) < batch_size * process_count:
        raise ValueError(f"{len(records)} training records (holdout {holdout} left out), "
                         f"fewer than one global batch of {batch_size * process_count}")
    # repeat() re-seeds the upstream shuffle per epoch: a new order every epoch.
    records = GlobalBatchRows(records.shuffle(seed=seed).repeat(None), local_batch=batch_size,
                              process_index=process_index, process_count=process_count)
    records = records.map(decode)
    if transform is not None:
        records = records.map(transform)
    read_options = grain.ReadOptions(num_threads=prefetch_threads,
                                     prefetch_buffer_size=max(2 * batch_size, 16))
    batches = records.to_iter_dataset(read_options).batch(
        batch_size, drop_remainder=True, batch_fn=_stack_batch)
    return grain.experimental.ThreadPrefetchIterDataset(
        batches, prefetch_buffer_size=prefetch_batches)


def _training_records(data_dir, holdout: int) -> grain.MapDataset:
    records = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(shard_paths(data_dir)))
    if not 0 <= holdout < len(records):
        raise ValueError(f"holdout {holdout} must be in [0, {len(records)}) records of {data_dir}")
    return records[:len(records) - holdout]


def holdout_batches(data_dir: str | os.PathLike, *, holdout: int, batch_size: int,
                    process_index: int = 0, process_count: int = 1,
                    decode: Callable[[bytes], dict] = decode_record) -> list[dict]:
    """The validation set: the last `holdout` records as fixed global batches of
    process_count x batch_size (a last, smaller batch dropped), this process's rows of each."""
    source = grain.sources.ArrayRecordDataSource(shard_paths(data_dir))
    total = len(source)
    if not 0 < holdout < total:
        raise ValueError(f"holdout {holdout} must be in (0, {total}) records of {data_dir}")
    global_batch = batch_size * process_count
    if holdout < global_batch:
        raise ValueError(f"holdout {holdout} is less than one global batch of {global_batch}")
    first = total - holdout
    out = []
    for start in range(first, first + holdout // global_batch * global_batch, global_batch):
        lo = start + process_index * batch_size
        out.append(_stack_batch([decode(source[i]) for i in range(lo, lo + batch_size)]))
    return out


def make_train_iterator(data_dir: str | os.PathLike, *, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1,
                        transform: RecordTransform | None = None,
                        decode: Callable[[bytes], dict] = decode_record,
                        prefetch_threads: int = 2,
                        prefetch_batches: int = 2, holdout: int = 0) -> grain.DatasetIterator:
    """Iterator over `make_train_dataset`; supports get_state() / set_state()."""
    return iter(make_train_dataset(
        data_dir, batch_size=batch_size, seed=seed, process_index=process_index,
        process_count=process_count, transform=transform, decode=decode,
        prefetch_threads=prefetch_threads, prefetch_batches=prefetch_batches, holdout=holdout))
