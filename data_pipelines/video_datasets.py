"""The two kinds of video dataset a job can train on, behind one reader: the synthetic Shapes split
(data_pipelines/shapes_writer.py, one shape for every clip) and a dataset built by
`mgen data build` (data_pipelines/clip_records.py, bucketed shapes, each clip with its own fps).
The derived-data writers (text cache, latents) and the loaders read datasets through this, so
they need not know which kind they have."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from data_pipelines import clip_records, shapes_av_writer, shapes_writer

# Audio-visual Shapes is a video dataset too (its records add the soundtrack), so captions,
# text caches and latents read it like the others.
_DECODERS = {shapes_writer.FORMAT_NAME: shapes_writer.decode_record,
             clip_records.CLIPS_FORMAT: clip_records.decode_clip_record,
             shapes_av_writer.FORMAT_NAME: shapes_av_writer.decode_av_record}


def load_video_manifest(data_dir: str | os.PathLike) -> dict:
    """The manifest of a Shapes or built dataset; raises naming the folder otherwise."""
    path = Path(data_dir) / shapes_writer.MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {data_dir} (missing {path.name}): write Shapes "
                                "with data.source=shapes or build one with `mgen data build`")
    manifest = json.loads(path.read_text())
    if manifest.get("format") not in _DECODERS:
        raise ValueError(f"{path}: format {manifest.get('format')!r} is not a video dataset "
                         f"(expected one of {sorted(_DECODERS)})")
    return manifest


def record_decoder(manifest: dict) -> Callable[[bytes], dict]:
    """bytes -> {"video": uint8 [T, H, W, 3], "caption": str, ...} for this dataset's records."""
    return _DECODERS[manifest["format"]]


def record_fps(record: dict, default: float) -> float:
    """A clip's frame rate: its own in a built dataset, the dataset's (data.fps) for Shapes."""
    return float(record.get("fps", default))


