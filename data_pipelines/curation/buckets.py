"""Which bucket of the build config's table (`cfg.buckets`, see mgen_jax/configs/data_build.py)
a clip or image goes to: the nearest aspect ratio, then the longest duration the clip covers
(at the bucket's own frame rate when the table gives buckets one).

`data_pipelines/bucketing.py` does the same over (frames, h, w) tuples for the loader; the build
table carries names, kinds and seconds, and the build wants "none" instead of an exception.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence


def aspect_distance(height: int, width: int, bucket: dict) -> float:
    """|log aspect ratio difference|: 2:1 and 1:2 are equally far from 1:1."""
    return abs(math.log(width / height) - math.log(bucket["width"] / bucket["height"]))


def nearest_aspect(buckets: Sequence[dict], height: int, width: int) -> list[dict]:
    """The buckets sharing the aspect ratio nearest to height x width (table order kept)."""
    if not buckets:
        return []
    best = min(aspect_distance(height, width, b) for b in buckets)
    return [b for b in buckets if aspect_distance(height, width, b) <= best + 1e-9]


def choose_image_bucket(buckets: Sequence[dict], height: int, width: int) -> dict | None:
    """The image bucket of nearest aspect ratio (first in the table on a tie), None if the table
    has no image bucket."""
    nearest = nearest_aspect([b for b in buckets if b["kind"] == "image"], height, width)
    return nearest[0] if nearest else None


def bucket_fps(bucket: dict, target_fps: float) -> float:
    """A bucket's frame rate: its own `fps` when the table gives one (Movie Gen's fine-tuning
    set mixes 16 s at 16 fps with 10.6 s at 24 fps), else the build's target_fps."""
    return float(bucket.get("fps", target_fps))


def choose_video_bucket(buckets: Sequence[dict], frames_at: int | Callable[[float], int],
                        height: int, width: int, *, target_fps: float = 0.0,
                        min_seconds: float = 0.0,
                        max_seconds: float = math.inf) -> dict | None:
    """The video bucket of nearest aspect ratio with the longest duration the clip covers (then
    the most frames), among buckets of min_seconds..max_seconds; None if the clip is shorter than
    all of them (or the table has no video bucket). frames_at(fps): how many frames the clip
    gives at that rate (an int: the same count for every bucket, a one-rate table); a bucket
    fits when it needs no more frames than that at its own rate (bucket_fps)."""
    count = frames_at if callable(frames_at) else (lambda fps: frames_at)
    videos = [b for b in buckets if b["kind"] == "video"
              and min_seconds - 1e-9 <= b["seconds"] <= max_seconds + 1e-9]
    fitting = [b for b in nearest_aspect(videos, height, width)
               if b["frames"] <= count(bucket_fps(b, target_fps))]
    return max(fitting, key=lambda b: (b["seconds"], b["frames"])) if fitting else None
