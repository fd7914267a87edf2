"""Write one shard of a built dataset: the encoded records of one bucket's shard, in source_id
order, into `<bucket>/shard-NNNNN-of-MMMMM.array_record` (data_pipelines/clip_records.py).

A shard's name and contents depend only on which clips it holds (selection.py decides that
from the sorted source_ids), never on the runner or on which worker writes it, so in-process
and multi-process builds produce the same files.
"""
from __future__ import annotations

import os

import apache_beam as beam

from data_pipelines.clip_records import WRITER_OPTIONS


def shard_path(bucket: str, index: int, count: int) -> str:
    """The shard's path relative to the dataset directory."""
    return f"{bucket}/shard-{index:05d}-of-{count:05d}.array_record"


class WriteShard(beam.DoFn):
    """((bucket, index, count), [(source_id, item_id, record bytes), ...]) -> shard info
    {"path", "bucket", "num_records", "items"} after writing the file under out_dir (a local
    or shared filesystem path: ArrayRecordWriter writes files, not object-store URLs)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def process(self, keyed_records):
        from array_record.python.array_record_module import ArrayRecordWriter
        (bucket, index, count), records = keyed_records
        # Sorting materialises the shard's records (at most records_per_shard of them): the
        # order inside a shard is part of a deterministic build.
        records = sorted(records, key=lambda r: r[0])
        relpath = shard_path(bucket, index, count)
        path = os.path.join(self.out_dir, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        writer = ArrayRecordWriter(path, WRITER_OPTIONS)
        try:
            for _, _, record in records:
                writer.write(record)
        finally:
            writer.close()
        yield {"path": relpath, "bucket": bucket, "num_records": len(records),
               "items": sorted({item_id for _, item_id, _ in records})}
