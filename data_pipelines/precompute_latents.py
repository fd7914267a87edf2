"""Encode a video dataset once with the frozen TAE into ArrayRecord shards of latents.

Large runs train the DiT from these shards instead of running the TAE every step. The output
mirrors the video dataset's shards 1:1 (same relative paths, so a built dataset keeps its bucket
folders); data_pipelines/latent_manifest.py describes the layout. Each record holds the posterior
mean/log-variance (stored as bfloat16, returned as float32 by `decode_latent_record`), the
caption, its text fields: each encoder's token ids (`ids.<encoder>`, `mask.<encoder>`) or, from a
text cache (data_pipelines/precompute_text.py), its embeddings (`text.<encoder>`,
`text_mask.<encoder>`), its bucket, and for a built dataset the clip's fps and source_id.

Process-sharded and resumable: process i of n encodes the video shards i::n, each into
`<shard>.tmp-<i>` renamed into place when complete, then its done marker (the shard's
statistics); a restarted run skips shards with a marker, so a kill redoes at most the shards in
flight. One normalisation for the whole dataset: `finalize_latents_manifest` merges every shard's
statistics once all are done."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import grain
import ml_dtypes
import msgpack
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines.array_fields import pack_arrays, unpack_arrays
from data_pipelines.latent_manifest import (FINGERPRINT_NAME, FORMAT_NAME, MANIFEST_NAME,
                                            done_path, finalize_latents_manifest, is_stale,
                                            latents_stamp, part_path, read_json, shard_done,
                                            shard_stats, video_shards, write_json_atomic)
from data_pipelines.video_datasets import load_video_manifest, record_decoder

_LATENT_FIELDS = ("latent_mean", "latent_logvar")
# Stored as bfloat16, read back as float32 (as the latents): per-frame visual features.
_FEATURE_FIELDS = ("video_features",)
# Clip fields a built dataset's records carry into their latent records (the DiT's FPS tag
# comes from the clip's own fps).
_CLIP_FIELDS = ("fps", "source_id")

# encode(uint8 videos [B, T, H, W, 3]) -> (mean, logvar) [B, t, h, w, C]; or of the records'
# `input_field` (audio [B, N] -> [B, t, C] for the audio job)
EncodeFn = Callable[[np.ndarray], tuple]
# features(uint8 videos [B, T, H, W, 3]) -> {name in _FEATURE_FIELDS: [B, ...]}: stored too
FeaturesFn = Callable[[np.ndarray], dict]
# text_fields(captions, shard path, index of the first caption in the shard, fps) -> {field:
# array [n, ...]} (token ids, or embeddings read from a text cache with the same shard layout);
# fps: None (a Shapes dataset: the experiment's data.fps) or one per caption (a built dataset).
TextFieldsFn = Callable[[list, str, int, object], dict]


class StaleLatentsError(ValueError):
    """The output holds latents of another fingerprint and this process may not remove them."""


def encode_latent_record(mean: np.ndarray, logvar: np.ndarray, text_fields: dict,
                         caption: str, **scalars) -> bytes:
    """scalars: the clip's bucket, fps, source_id (msgpack-able values)."""
    arrays = {"latent_mean": np.asarray(mean, np.float32).astype(ml_dtypes.bfloat16),
              "latent_logvar": np.asarray(logvar, np.float32).astype(ml_dtypes.bfloat16),
              **text_fields}
    return msgpack.packb({"arrays": pack_arrays(arrays), "caption": caption, **scalars},
                         use_bin_type=True)


def decode_latent_record(data: bytes) -> dict:
    """The record's arrays and scalars; the latents upcast to float32 (stored as bfloat16), so
    the DiT step's inputs keep one dtype whatever the storage."""
    rec = msgpack.unpackb(data, raw=False)
    arrays = unpack_arrays(rec.pop("arrays"))
    for name in _LATENT_FIELDS + _FEATURE_FIELDS:
        if name in arrays:
            arrays[name] = arrays[name].astype(np.float32)
    return {**arrays, **rec}


def remove_stale_latents(video_dir: str | os.PathLike, out_dir: str | os.PathLike,
                         fingerprint: dict) -> bool:
    """Remove out_dir when it holds latents of another fingerprint (or dataset); True if it did.
    Multi-process jobs call this on process 0 alone, then a barrier, then precompute_latents."""
    out_dir = Path(out_dir)
    if out_dir.exists() and is_stale(out_dir, latents_stamp(load_video_manifest(video_dir),
                                                            fingerprint)):
        shutil.rmtree(out_dir)
        return True
    return False


def _padded(recs: list, field: str, batch_size: int) -> np.ndarray:
    """A short last batch is padded with its last clip: one batch shape per bucket, so the
    jitted encoder compiles once per bucket."""
    return np.stack([r[field] for r in recs] + [recs[-1][field]] * (batch_size - len(recs)))


def _encode_shard(video_dir: Path, out_dir: Path, shard: dict, *, decode, encode: EncodeFn,
                  text_fields: TextFieldsFn, batch_size: int, process_index: int,
                  input_field: str = "video", features: FeaturesFn | None = None) -> dict:
    """Write one latent shard (temp file renamed into place), then its done marker."""
    source = grain.sources.ArrayRecordDataSource([str(video_dir / shard["path"])])
    final = out_dir / shard["path"]
    tmp = final.with_name(f"{final.name}.tmp-{process_index}")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    means, latent_shape = [], None
    writer = ArrayRecordWriter(str(tmp), "group_size:1")
    try:
        for start in range(0, len(source), batch_size):
            recs = [decode(source[i]) for i in range(start, min(start + batch_size, len(source)))]
            n = len(recs)
            mean, logvar = (np.asarray(a)[:n] for a in encode(_padded(recs, input_field,
                                                                        batch_size)))
            latent_shape = list(mean.shape[1:])
            fps = [r["fps"] for r in recs] if "fps" in recs[0] else None
            fields = text_fields([r["caption"] for r in recs], shard["path"], start, fps)
            if features is not None:
                for name, value in features(_padded(recs, "video", batch_size)).items():
                    if name not in _FEATURE_FIELDS:
                        raise ValueError(f"feature {name!r} is not one of {_FEATURE_FIELDS}")
                    fields[name] = np.asarray(value, np.float32)[:n].astype(ml_dtypes.bfloat16)
            for i, r in enumerate(recs):
                scalars = {k: r[k] for k in _CLIP_FIELDS if k in r}
                writer.write(encode_latent_record(
                    mean[i], logvar[i], {k: v[i] for k, v in fields.items()}, r["caption"],
                    bucket=shard["bucket"], **scalars))
            # The statistics are of what is stored (bf16), which is what the DiT reads.
            means.append(mean.astype(ml_dtypes.bfloat16))
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, final)
    done = {"path": shard["path"], "bucket": shard["bucket"], "num_records": len(source),
            "latent_shape": latent_shape, **shard_stats(means)}
    write_json_atomic(done_path(out_dir, shard["path"]), done)
    return done


def precompute_latents(video_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                       encode: EncodeFn, text_fields: TextFieldsFn, batch_size: int,
                       fingerprint: dict, process_index: int = 0,
                       process_count: int = 1, input_field: str = "video",
                       features: FeaturesFn | None = None) -> dict:
    """Write this process's latent shards (video shards i::n; those already done are skipped)
    and its manifest part. Returns the merged manifest when every shard is done (always in a
    single-process run), else this process's part. input_field: the record field `encode`
    reads (the audio job encodes "audio"); features: per-frame features of the videos stored
    beside the latents (the audio job's visual conditioning).

    A stale output (another fingerprint or dataset) is removed and rebuilt in a single-process
    run; with several processes it raises StaleLatentsError: removing it here would race with
    the others' writes, so the job removes it on process 0 (`remove_stale_latents`) before a
    barrier and only then calls this on every process."""
    video_dir, out_dir = Path(video_dir), Path(out_dir)
    video_manifest = load_video_manifest(video_dir)
    stamp = latents_stamp(video_manifest, fingerprint)
    if out_dir.exists() and is_stale(out_dir, stamp):
        if process_count > 1:
            raise StaleLatentsError(
                f"{out_dir} holds latents of another TAE / text set-up / dataset; with "
                f"{process_count} processes only process 0 may remove it "
                "(remove_stale_latents, then a barrier) before precompute_latents runs")
        shutil.rmtree(out_dir)  # derived data of an older TAE: rebuild
    manifest = read_json(out_dir / MANIFEST_NAME)
    if manifest is not None:
        return manifest
    # Every process writes the same content (atomically): no race, and present before any shard.
    write_json_atomic(out_dir / FINGERPRINT_NAME, stamp)
    decode = record_decoder(video_manifest)
    shards = video_shards(video_manifest)
    finished = []
    for shard in shards[process_index::process_count]:
        done = shard_done(out_dir, shard["path"])
        if done is None:
            done = _encode_shard(video_dir, out_dir, shard, decode=decode, encode=encode,
                                 text_fields=text_fields, batch_size=batch_size,
                                 process_index=process_index, input_field=input_field,
                                 features=features)
        finished.append(done)
    part = {"format": FORMAT_NAME, "fingerprint": fingerprint, "process_index": process_index,
            "process_count": process_count, "shards": finished}
    write_json_atomic(part_path(out_dir, process_index, process_count), part)
    if all(shard_done(out_dir, s["path"]) is not None for s in shards):
        return finalize_latents_manifest(out_dir, video_manifest)
    return part
