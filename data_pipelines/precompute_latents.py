"""Encode a video dataset once with the frozen TAE into ArrayRecord shards of latents.

Large runs train the DiT from these shards instead of running the TAE every step. Each output
record holds the posterior mean/log-variance (float32), the caption text and its text fields:
each encoder's token ids (`ids.<encoder>`, `mask.<encoder>`) or, from a text cache
(data_pipelines/precompute_text.py), its embeddings (`text.<encoder>`, `text_mask.<encoder>`). The manifest keeps the shard list, a fingerprint of what produced the latents (TAE
checkpoint step, tokenizer length, ...) and the measured latent shift/scale.

Writing is atomic (temporary directory renamed into place); a manifest with the same fingerprint
is reused, a stale one (e.g. a retrained TAE) is rebuilt."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import grain
import msgpack
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines.array_fields import pack_arrays, unpack_arrays
from data_pipelines.shapes_writer import MANIFEST_NAME, decode_record, load_manifest

FORMAT_NAME = "mgen_latents_v2"


def encode_latent_record(mean: np.ndarray, logvar: np.ndarray, text_fields: dict,
                         caption: str) -> bytes:
    arrays = {"latent_mean": np.asarray(mean, np.float32),
              "latent_logvar": np.asarray(logvar, np.float32), **text_fields}
    return msgpack.packb({"arrays": pack_arrays(arrays), "caption": caption}, use_bin_type=True)


def decode_latent_record(data: bytes) -> dict:
    rec = msgpack.unpackb(data, raw=False)
    return {**unpack_arrays(rec["arrays"]), "caption": rec["caption"]}


def precompute_latents(video_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       encode: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                       text_fields: Callable[[list[str], str, int], dict], batch_size: int,
                       fingerprint: dict, process_index: int = 0,
                       process_count: int = 1) -> dict:
    """encode(uint8 videos [B,T,H,W,3]) -> (mean, logvar); text_fields(captions, shard path,
    index of the first caption in the shard) -> {field name: array [n, ...]} (token ids, or
    embeddings read from a text cache with the same shard layout). Each process writes the video
    shards i::n (single-process runs write all of them)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST_NAME
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing.get("fingerprint") == fingerprint:
            return existing
        shutil.rmtree(out_dir)  # derived data from an older TAE: rebuild
    video_manifest = load_manifest(video_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    total, total_sq, count, latent_shape = 0.0, 0.0, 0, None
    try:
        shards = []
        for shard in video_manifest["shards"][process_index::process_count]:
            source = grain.sources.ArrayRecordDataSource([str(Path(video_dir) / shard["path"])])
            writer = ArrayRecordWriter(str(tmp_dir / shard["path"]), "group_size:1")
            try:
                for start in range(0, len(source), batch_size):
                    recs = [decode_record(source[i])
                            for i in range(start, min(start + batch_size, len(source)))]
                    mean, logvar = encode(np.stack([r["video"] for r in recs]))
                    mean, logvar = np.asarray(mean), np.asarray(logvar)
                    latent_shape = list(mean.shape[1:])
                    fields = text_fields([r["caption"] for r in recs], shard["path"], start)
                    total += float(mean.sum(dtype=np.float64))
                    total_sq += float(np.square(mean, dtype=np.float64).sum())
                    count += mean.size
                    for i, r in enumerate(recs):
                        writer.write(encode_latent_record(
                            mean[i], logvar[i], {k: v[i] for k, v in fields.items()},
                            r["caption"]))
            finally:
                writer.close()
            shards.append({"path": shard["path"], "num_records": len(source)})
        mean_all = total / count
        std_all = max((total_sq / count - mean_all ** 2), 0.0) ** 0.5
        manifest = {"format": FORMAT_NAME, "fingerprint": fingerprint, "shards": shards,
                    "num_records": sum(s["num_records"] for s in shards), "latent_shape": latent_shape,
                    "latent_shift": mean_all, "latent_scale": 1.0 / (std_all + 1e-8)}
        (tmp_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        os.rename(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return manifest
