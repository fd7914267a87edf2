"""The record format of a built dataset (`mgen data build`): one clip (or image) per record,
cut to its bucket, with what training needs and nothing it must re-decode at full size.

Layout of a built dataset directory:
  manifest.json                       format, build config, fingerprint, buckets, shard list
  report.json                         counts (seen, written, skipped by reason, per bucket) and
                                      every rejected item with its reason
  <bucket name>/shard-NNNNN-of-MMMMM.array_record   records of one bucket only

A record is a msgpack map:
  video        bytes: uint8 [frames, height, width, 3] in C order (store="frames"), or
  encoded      bytes: the clip as an mp4 (store="encoded"; decoded on read)
  video_shape  [frames, height, width, 3]
  caption      str
  fps          float, the stored clip's frame rate (the target fps of the build)
  native_fps   float, the source's frame rate (0 for images)
  duration     float seconds of the stored clip (0 for images)
  source_id    str, where it came from ("<relative path>#<first frame>-<last frame>", tfds key)
  bucket       str, the bucket name (manifest["buckets"][name] has its shape and kind)
  camera       str, an optional camera-motion label ("" when unknown)

Every shard holds records of one bucket, so a loader batches a bucket without looking inside.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import msgpack
import numpy as np

CLIPS_FORMAT = "mgen_clips_v1"
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.json"
# One record per chunk so random access (shuffling) reads just one record.
WRITER_OPTIONS = "group_size:1"


def encode_clip_record(*, video: np.ndarray, caption: str, fps: float, native_fps: float,
                       source_id: str, bucket: str, camera: str = "",
                       store: str = "frames") -> bytes:
    """video: uint8 [T, H, W, 3] already cut to its bucket's shape."""
    video = np.ascontiguousarray(video, dtype=np.uint8)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be uint8 [T, H, W, 3], got shape {video.shape}")
    record = {"video_shape": list(video.shape), "caption": str(caption), "fps": float(fps),
              "native_fps": float(native_fps),
              "duration": 0.0 if video.shape[0] == 1 else video.shape[0] / float(fps),
              "source_id": str(source_id), "bucket": str(bucket), "camera": str(camera)}
    if store == "frames":
        record["video"] = video.tobytes()
    elif store == "encoded":
        record["encoded"] = encode_mp4_bytes(video, fps)
    else:
        raise ValueError(f"store={store!r}: expected 'frames' or 'encoded'")
    return msgpack.packb(record, use_bin_type=True)


def decode_clip_record(data: bytes) -> dict:
    """Inverse of `encode_clip_record`: `video` uint8 [T, H, W, 3] (decoded from the mp4 when
    the record stores encoded bytes), the scalar fields, and `is_image` (one frame)."""
    record = msgpack.unpackb(data, raw=False)
    shape = record.pop("video_shape")
    if "encoded" in record:
        video = decode_mp4_bytes(record.pop("encoded"))
        if list(video.shape) != shape:
            raise ValueError(f"record {record['source_id']}: decoded {video.shape}, stored {shape}")
    else:
        video = np.frombuffer(record.pop("video"), np.uint8).reshape(shape).copy()
    record["video"] = video
    record["is_image"] = shape[0] == 1
    return record


def encode_mp4_bytes(video: np.ndarray, fps: float) -> bytes:
    """H.264 (near-lossless, crf 10, yuv444) in memory; 1-frame clips too."""
    import av
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=max(1, int(round(fps))))
        stream.width, stream.height = video.shape[2], video.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "10"}
        for frame in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def decode_mp4_bytes(data: bytes) -> np.ndarray:
    import av
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


def load_clips_manifest(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no built dataset at {data_dir} (missing {MANIFEST_NAME}); "
                                "build one with `mgen data build`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != CLIPS_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {CLIPS_FORMAT!r}")
    return manifest
