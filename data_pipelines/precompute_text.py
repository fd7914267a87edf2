"""Encode a dataset's captions once with the frozen text encoders into ArrayRecord shards.

`mgen data precompute-text` (and the text-to-video job with text.precompute=True) runs the
encoders once; the DiT then trains on these embeddings instead of running UL2 / MetaCLIP / ByT5
every step. The cache mirrors the dataset's shard layout (same shard names, same record order), so
record i of shard s is the caption of record i of the dataset's shard s. Each record holds the
caption and, per encoder, `text.<name>` (bfloat16 [L, D]) and `text_mask.<name>` (bool [L]).

Process-sharded: process i of n writes the dataset shards i::n (each shard written to a temporary
file and renamed into place) and then its manifest part `manifest.part-<i>-of-<n>.json`; the
cache is complete when all n parts exist. `null.npz` holds each encoder's empty-prompt embedding
(the classifier-free-guidance null). A cache built with another fingerprint (other encoders,
lengths or checkpoints) is rebuilt."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import grain
import msgpack
import ml_dtypes
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines.array_fields import pack_arrays, unpack_arrays
from data_pipelines.video_datasets import load_video_manifest, record_decoder

FORMAT_NAME = "mgen_text_embeddings_v1"
NULL_FILE = "null.npz"

# encode(list of captions, fps) -> {encoder name: (embeddings [n, L, D] float, mask [n, L])};
# fps: None (the experiment's data.fps) or one per caption (a built dataset's clips keep theirs).
EncodeFn = Callable[..., dict]


def _part_name(process_index: int, process_count: int) -> str:
    return f"manifest.part-{process_index}-of-{process_count}.json"


def encode_text_record(caption: str, embeddings: dict) -> bytes:
    arrays = {}
    for name, (emb, mask) in embeddings.items():
        arrays[f"text.{name}"] = np.asarray(emb, np.float32).astype(ml_dtypes.bfloat16)
        arrays[f"text_mask.{name}"] = np.asarray(mask).astype(bool)
    return msgpack.packb({"arrays": pack_arrays(arrays), "caption": caption}, use_bin_type=True)


def decode_text_record(data: bytes) -> dict:
    rec = msgpack.unpackb(data, raw=False)
    return {**unpack_arrays(rec["arrays"]), "caption": rec["caption"]}


def load_text_cache(cache_dir: str | os.PathLike) -> dict:
    """The merged manifest of a complete cache; raises naming what is missing otherwise."""
    cache_dir = Path(cache_dir)
    parts = sorted(cache_dir.glob("manifest.part-*-of-*.json"))
    if not parts:
        raise FileNotFoundError(f"{cache_dir} holds no text-embedding manifest: run "
                                "`mgen data precompute-text` first")
    first = json.loads(parts[0].read_text())
    count = first["process_count"]
    missing = [_part_name(i, count) for i in range(count)
               if not (cache_dir / _part_name(i, count)).exists()]
    if missing:
        raise FileNotFoundError(f"text cache {cache_dir} is incomplete: {missing} not written "
                                "yet (a process has not finished)")
    merged = dict(first, shards=[])
    for i in range(count):
        part = json.loads((cache_dir / _part_name(i, count)).read_text())
        if part["fingerprint"] != first["fingerprint"]:
            raise ValueError(f"text cache {cache_dir}: manifest parts disagree on the fingerprint")
        merged["shards"].extend(part["shards"])
    merged["shards"].sort(key=lambda s: s["path"])
    merged["num_records"] = sum(s["num_records"] for s in merged["shards"])
    return merged


def load_null_embeddings(cache_dir: str | os.PathLike) -> tuple[dict, dict]:
    """({name: [L, D] float32}, {name: [L] bool}) of the empty prompt."""
    with np.load(Path(cache_dir) / NULL_FILE) as f:
        names = sorted({k.split(".", 1)[1] for k in f.files})
        return ({n: f[f"text.{n}"] for n in names}, {n: f[f"text_mask.{n}"] for n in names})


def _existing_fingerprint(cache_dir: Path):
    parts = sorted(cache_dir.glob("manifest.part-*-of-*.json"))
    return json.loads(parts[0].read_text())["fingerprint"] if parts else None


def precompute_text(data_dir: str | os.PathLike, cache_dir: str | os.PathLike, *,
                    encode: EncodeFn, batch_size: int, fingerprint: dict,
                    process_index: int = 0, process_count: int = 1) -> dict:
    """Write this process's part of the cache (skipped when already there with the same
    fingerprint) and return its manifest part."""
    cache_dir = Path(cache_dir)
    part_path = cache_dir / _part_name(process_index, process_count)
    if part_path.exists() and json.loads(part_path.read_text())["fingerprint"] == fingerprint:
        return json.loads(part_path.read_text())
    if cache_dir.exists() and _existing_fingerprint(cache_dir) not in (None, fingerprint):
        if process_index == 0:
            shutil.rmtree(cache_dir)  # embeddings of other encoders: rebuild
        else:
            raise ValueError(f"text cache {cache_dir} was built with other encoders; process 0 "
                             "rebuilds it, rerun after it has")
    cache_dir.mkdir(parents=True, exist_ok=True)
    if process_index == 0:
        null = encode([""])
        tmp = cache_dir / f".{NULL_FILE}.tmp.npz"
        np.savez(tmp, **{f"text.{n}": np.asarray(e[0], np.float32) for n, (e, _) in null.items()},
                 **{f"text_mask.{n}": np.asarray(m[0]).astype(bool) for n, (_, m) in null.items()})
        os.replace(tmp, cache_dir / NULL_FILE)
    shards, shapes = [], {}
    manifest = load_video_manifest(data_dir)
    decode = record_decoder(manifest)
    for shard in manifest["shards"][process_index::process_count]:
        source = grain.sources.ArrayRecordDataSource([str(Path(data_dir) / shard["path"])])
        tmp = cache_dir / f"{shard['path']}.tmp"
        tmp.parent.mkdir(parents=True, exist_ok=True)  # built datasets keep a folder per bucket
        writer = ArrayRecordWriter(str(tmp), "group_size:1")
        try:
            for start in range(0, len(source), batch_size):
                recs = [decode(source[i])
                        for i in range(start, min(start + batch_size, len(source)))]
                captions = [r["caption"] for r in recs]
                fps = [r["fps"] for r in recs] if "fps" in recs[0] else None
                embeddings = encode(captions, fps)
                shapes = {n: list(np.shape(e)[1:]) for n, (e, _) in embeddings.items()}
                for i, caption in enumerate(captions):
                    writer.write(encode_text_record(
                        caption, {n: (e[i], m[i]) for n, (e, m) in embeddings.items()}))
        finally:
            writer.close()
        os.replace(tmp, cache_dir / shard["path"])
        shards.append({"path": shard["path"], "num_records": len(source)})
    part = {"format": FORMAT_NAME, "fingerprint": fingerprint, "shards": shards,
            "encoders": shapes, "dtype": "bfloat16", "process_index": process_index,
            "process_count": process_count}
    tmp = part_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(part, indent=2))
    os.replace(tmp, part_path)
    return part


class TextCacheReader:
    """Random access to one shard of a cache: fields(start, captions) -> {field: [n, ...]},
    checking that the cached captions are the ones asked for (shards must line up)."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.cache_dir = Path(cache_dir)
        self._sources = {}

    def fields(self, captions: list[str], shard_path: str, start: int) -> dict:
        if shard_path not in self._sources:
            self._sources[shard_path] = grain.sources.ArrayRecordDataSource(
                [str(self.cache_dir / shard_path)])
        source = self._sources[shard_path]
        recs = [decode_text_record(source[start + i]) for i in range(len(captions))]
        for i, (rec, caption) in enumerate(zip(recs, captions)):
            if rec["caption"] != caption:
                raise ValueError(f"text cache {self.cache_dir}/{shard_path} record {start + i} "
                                 f"holds {rec['caption']!r}, the dataset {caption!r}: the cache "
                                 "was built from another dataset")
        keys = [k for k in recs[0] if k != "caption"]
        return {k: np.stack([r[k] for r in recs]) for k in keys}
