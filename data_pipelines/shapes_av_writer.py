"""Write the audio-visual Shapes TRAIN split (data_pipelines/shapes_av.py) to ArrayRecord shards,
once: a sibling of shapes_writer.py with the same layout, sharding, atomic and idempotent
writing (its `write_sharded_records`), and format name "mgen_shapes_av_v1".

Each stored record is a msgpack map:
  video          bytes, uint8 [frames, height, width, 3] in C order
  video_shape    [frames, height, width, 3]
  audio          bytes, int16 PCM, mono, little-endian (full scale 32767)
  num_samples    int, frames / fps * sample_rate (rounded)
  sample_rate    int (Hz)
  fps            float
  bounce_times   [float], seconds from frame 0, ascending, 1 to shapes_av.MAX_BOUNCES of them
  caption        str, a random paraphrase (shapes_av.av_caption)
  colour, shape, direction   str labels (direction: the initial one)
  index          int, the clip's global index

`decode_av_record` gives fixed-shape arrays, so records stack into batches
(data_pipelines/grain_pipeline.py `decode=decode_av_record`):
  video          uint8 [frames, height, width, 3]
  audio          float32 [num_samples] in [-1, 1]
  sample_rate    int,  fps  float
  bounce_times   float32 [MAX_BOUNCES], NaN after the first num_bounces
  num_bounces    int32
  caption, colour, shape, direction  str;  index  int

Clip i is drawn from its own generator seeded by (seed, i), so its content does not depend on
the sharding.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import msgpack
import numpy as np

from data_pipelines import shapes, shapes_av, soundtrack
from data_pipelines.shapes_writer import MANIFEST_NAME, write_sharded_records

FORMAT_NAME = "mgen_shapes_av_v1"
_PCM_SCALE = 32767.0


def encode_av_record(clip: shapes_av.AVClip, caption: str, colour: str, shape: str,
                     direction: str, index: int) -> bytes:
    video = np.ascontiguousarray(clip.video, dtype=np.uint8)
    pcm = np.round(np.clip(clip.audio, -1.0, 1.0) * _PCM_SCALE).astype("<i2")
    return msgpack.packb({
        "video": video.tobytes(),
        "video_shape": list(video.shape),
        "audio": pcm.tobytes(),
        "num_samples": int(len(pcm)),
        "sample_rate": int(clip.sample_rate),
        "fps": float(clip.fps),
        "bounce_times": [float(t) for t in clip.bounce_times],
        "caption": caption,
        "colour": colour,
        "shape": shape,
        "direction": direction,
        "index": int(index),
    }, use_bin_type=True)


def decode_av_record(data: bytes) -> dict:
    """Inverse of `encode_av_record`, with fixed-shape arrays (see the module docstring)."""
    record = msgpack.unpackb(data, raw=False)
    record["video"] = np.frombuffer(record["video"], np.uint8).reshape(
        record.pop("video_shape")).copy()
    pcm = np.frombuffer(record["audio"], "<i2")
    if len(pcm) != record.pop("num_samples"):
        raise ValueError(f"record {record['index']}: audio holds {len(pcm)} samples, "
                         "not the num_samples stored with it")
    record["audio"] = (pcm / _PCM_SCALE).astype(np.float32)
    bounces = record.pop("bounce_times")
    if len(bounces) > shapes_av.MAX_BOUNCES:
        raise ValueError(f"record {record['index']}: {len(bounces)} bounces, more than "
                         f"MAX_BOUNCES = {shapes_av.MAX_BOUNCES}")
    record["bounce_times"] = np.full(shapes_av.MAX_BOUNCES, np.nan, np.float32)
    record["bounce_times"][:len(bounces)] = bounces
    record["num_bounces"] = np.int32(len(bounces))
    return record


def valid_bounce_times(record: dict) -> np.ndarray:
    """The real bounce times (seconds) of one decoded record, padding dropped."""
    return np.asarray(record["bounce_times"][:int(record["num_bounces"])], np.float64)


def render_av_record(index: int, *, seed: int, frames: int, height: int, width: int,
                     fps: float, sample_rate: int, combos: tuple[shapes.Combo, ...]) -> bytes:
    rng = np.random.default_rng([seed, index])
    colour, shape, direction = combos[rng.integers(len(combos))]
    text = shapes_av.av_caption(colour, shape, direction, rng)
    clip = shapes_av.render_av_clip(colour, shape, direction, frames=frames, height=height,
                                    width=width, fps=fps, sample_rate=sample_rate, rng=rng)
    return encode_av_record(clip, text, colour, shape, direction, index)


def write_shapes_av_dataset(out_dir: str | os.PathLike, *, num_clips: int, num_shards: int,
                            frames: int, height: int, width: int, fps: float, sample_rate: int,
                            seed: int) -> dict:
    """Write (or find) the audio-visual TRAIN split and return its manifest."""
    parameters = {"num_clips": int(num_clips), "num_shards": int(num_shards),
                  "frames": int(frames), "height": int(height), "width": int(width),
                  "fps": float(fps), "sample_rate": int(sample_rate), "seed": int(seed)}
    combos = shapes.train_combos()

    def render(index: int) -> bytes:
        return render_av_record(index, seed=seed, frames=frames, height=height, width=width,
                                fps=fps, sample_rate=sample_rate, combos=combos)

    return write_sharded_records(
        out_dir, format_name=FORMAT_NAME, parameters=parameters, num_records=num_clips,
        num_shards=num_shards, render_record=render,
        manifest_fields={
            "train_combos": [list(c) for c in combos],
            "held_out_combos": [list(c) for c in shapes.held_out_combos()],
            "colours": {name: list(rgb) for name, rgb in shapes.COLOURS.items()},
            "tone_hz": dict(soundtrack.TONE_HZ),
            "shape_partials": {name: list(a) for name, a in soundtrack.SHAPE_PARTIALS.items()},
            "num_samples": soundtrack.soundtrack_length(frames, fps, sample_rate),
            "max_bounces": shapes_av.MAX_BOUNCES,
        })


def load_av_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of an audio-visual Shapes dataset; raises naming the folder otherwise."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no audio-visual Shapes dataset at {data_dir} (missing "
                                f"{MANIFEST_NAME}); write one with write_shapes_av_dataset")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT_NAME!r}")
    return manifest


def write_shapes_av_source(data_cfg, out_dir: str) -> dict:
    """A "shapes_av" data source: the audio-visual Shapes train split of data_cfg's size
    (plus data_cfg.audio_sample_rate) into out_dir, or the one already there."""
    d = data_cfg
    return write_shapes_av_dataset(out_dir, num_clips=d.num_clips, num_shards=d.num_shards,
                                   frames=d.frames, height=d.height, width=d.width, fps=d.fps,
                                   sample_rate=d.audio_sample_rate, seed=d.seed)
