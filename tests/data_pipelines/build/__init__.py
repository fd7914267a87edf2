"""Tests of `mgen data build` (data_pipelines/build) and their shared helpers."""
import hashlib
import os
from pathlib import Path

from data_pipelines.build.build_config import load_build_config
from data_pipelines.clip_records import decode_clip_record, load_clips_manifest

TINY_CONFIG = str(Path(__file__).resolve().parents[3] / "experiments" / "data_tiny.py")


def tiny_config(*overrides: str):
    """experiments/data_tiny.py through the real loading path, with KEY=VALUE overrides."""
    return load_build_config(TINY_CONFIG, overrides)


def read_records(out_dir) -> list[dict]:
    """Every record of a built dataset, decoded, each with the "shard" it was read from."""
    from array_record.python.array_record_module import ArrayRecordReader
    records = []
    for shard in load_clips_manifest(out_dir)["shards"]:
        reader = ArrayRecordReader(os.path.join(out_dir, shard["path"]))
        try:
            for data in reader.read_all():
                records.append({**decode_clip_record(data), "shard": shard["path"]})
        finally:
            reader.close()
    return records


def record_key(record: dict) -> tuple:
    """What makes two builds' records the same: source, bucket, pixels, caption."""
    return (record["source_id"], record["bucket"],
            hashlib.sha256(record["video"].tobytes()).hexdigest(), record["caption"])


def item_of(source_id: str) -> str:
    """The item a clip came from: its source_id without the '#first-last' frame span."""
    return source_id.rsplit("#", 1)[0]
