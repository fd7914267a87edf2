"""Write the Shapes TRAIN split to ArrayRecord shards, once.

Layout of `out_dir`:
  manifest.json                           parameters, shard list, counts
  shard-00000-of-00004.array_record       records, msgpack-encoded
  ...

Each record is a msgpack map (see `encode_record`):
  video        bytes, uint8 video in C order
  video_shape  [frames, height, width, 3]
  caption      str, a random paraphrase
  colour, shape, direction   str labels
  index        int, the clip's global index

Clip i is rendered from its own generator seeded by (seed, i), so the
content of a clip does not depend on how the data is sharded.

Writing is atomic (a temporary sibling directory renamed into place) and
idempotent: a second call with the same parameters returns the existing
manifest; with different parameters it raises rather than mixing datasets.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import msgpack
import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from data_pipelines import shapes

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "mgen_shapes_v1"
# One record per chunk so random access (shuffling) reads just one record.
_WRITER_OPTIONS = "group_size:1"


def encode_record(video: np.ndarray, caption: str, colour: str, shape: str,
                  direction: str, index: int) -> bytes:
    video = np.ascontiguousarray(video, dtype=np.uint8)
    return msgpack.packb({
        "video": video.tobytes(),
        "video_shape": list(video.shape),
        "caption": caption,
        "colour": colour,
        "shape": shape,
        "direction": direction,
        "index": int(index),
    }, use_bin_type=True)


def decode_record(data: bytes) -> dict:
    """Inverse of `encode_record`; `video` comes back as a writable uint8 array."""
    record = msgpack.unpackb(data, raw=False)
    video = np.frombuffer(record["video"], np.uint8).reshape(record.pop("video_shape"))
    record["video"] = video.copy()
    return record


def load_manifest(data_dir: str | os.PathLike) -> dict:
    path = Path(data_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no Shapes dataset at {data_dir} (missing {MANIFEST_NAME}); "
                                "write one with write_shapes_dataset")
    return json.loads(path.read_text())


def shard_paths(data_dir: str | os.PathLike) -> list[str]:
    """Absolute shard paths listed in the manifest, in order."""
    manifest = load_manifest(data_dir)
    return [str(Path(data_dir) / shard["path"]) for shard in manifest["shards"]]


def _check_same_parameters(existing: dict, parameters: dict, out_dir: Path,
                           format_name: str) -> dict:
    if existing.get("format") != format_name or existing.get("parameters") != parameters:
        raise ValueError(
            f"{out_dir} already holds a {existing.get('format')} dataset written with parameters "
            f"{existing.get('parameters')}, not the requested {format_name} with {parameters}; "
            "use another directory or delete it")
    return existing


def _render_record(index: int, seed: int, frames: int, height: int, width: int,
                   combos: tuple[shapes.Combo, ...]) -> bytes:
    rng = np.random.default_rng([seed, index])
    colour, shape, direction = combos[rng.integers(len(combos))]
    text = shapes.caption(colour, shape, direction, rng)
    video = shapes.render_clip(colour, shape, direction, frames=frames, height=height,
                               width=width, rng=rng)
    return encode_record(video, text, colour, shape, direction, index)


def write_shapes_dataset(out_dir: str | os.PathLike, *, num_clips: int, num_shards: int,
                         frames: int, height: int, width: int, seed: int) -> dict:
    """Write (or find) the TRAIN split and return its manifest."""
    parameters = {"num_clips": int(num_clips), "num_shards": int(num_shards),
                  "frames": int(frames), "height": int(height), "width": int(width),
                  "seed": int(seed)}
    combos = shapes.train_combos()
    return write_sharded_records(
        out_dir, format_name=FORMAT_NAME, parameters=parameters, num_records=num_clips,
        num_shards=num_shards,
        render_record=lambda index: _render_record(index, seed, frames, height, width, combos),
        manifest_fields={
            "train_combos": [list(c) for c in combos],
            "held_out_combos": [list(c) for c in shapes.held_out_combos()],
            "colours": {name: list(rgb) for name, rgb in shapes.COLOURS.items()},
        })


def write_sharded_records(out_dir: str | os.PathLike, *, format_name: str, parameters: dict,
                          num_records: int, num_shards: int,
                          render_record: Callable[[int], bytes], manifest_fields: dict) -> dict:
    """Write records render_record(0 .. num_records - 1) into num_shards ArrayRecord shards
    plus a manifest (format, parameters, counts, shard list, manifest_fields), atomically and
    idempotently (see the module docstring); return the manifest. Shared with
    shapes_av_writer.py."""
    out_dir = Path(out_dir)
    if (out_dir / MANIFEST_NAME).exists():
        return _check_same_parameters(load_manifest(out_dir), parameters, out_dir, format_name)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists, is not empty and has no {MANIFEST_NAME}; "
                              "refusing to overwrite it")
    if not 1 <= num_shards <= num_records:
        raise ValueError(f"need 1 <= num_shards <= num_clips, got {num_shards} and {num_records}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        shard_entries = []
        # Contiguous index ranges: shard k holds records [bounds[k], bounds[k+1]).
        bounds = np.linspace(0, num_records, num_shards + 1).round().astype(int)
        for shard_id in range(num_shards):
            name = f"shard-{shard_id:05d}-of-{num_shards:05d}.array_record"
            writer = ArrayRecordWriter(str(tmp_dir / name), _WRITER_OPTIONS)
            try:
                for index in range(bounds[shard_id], bounds[shard_id + 1]):
                    writer.write(render_record(int(index)))
            finally:
                writer.close()
            shard_entries.append({"path": name,
                                  "num_records": int(bounds[shard_id + 1] - bounds[shard_id])})
        manifest = {"format": format_name, "split": "train", "parameters": parameters,
                    "num_records": int(num_records), "shards": shard_entries,
                    **manifest_fields}
        (tmp_dir / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        if out_dir.exists():  # an empty directory: rename would fail on some systems
            out_dir.rmdir()
        try:
            os.rename(tmp_dir, out_dir)
        except OSError:
            # Another writer won the race; accept its dataset if it matches.
            if (out_dir / MANIFEST_NAME).exists():
                return _check_same_parameters(load_manifest(out_dir), parameters, out_dir,
                                              format_name)
            raise
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return manifest


def write_shapes_source(data_cfg, out_dir: str) -> dict:
    """The "shapes" data source (configs/registries.py:DATA_SOURCES): the Shapes train split of
    data_cfg's size into out_dir, or the one already there."""
    d = data_cfg
    return write_shapes_dataset(out_dir, num_clips=d.num_clips, num_shards=d.num_shards,
                                frames=d.frames, height=d.height, width=d.width, seed=d.seed)
