"""Shape buckets: batches of one shape per bucket, so a jitted step compiles once per bucket
(a handful of programs) instead of once per clip shape.

Movie Gen trains on several aspect ratios (1:1, 9:16, 16:9) and durations (4-16 s); each clip
is assigned to the bucket of the same aspect ratio and duration class that it fits in (resized /
cropped by the decoder to exactly the bucket shape), and a batcher groups examples per bucket.
"""
import collections
from typing import Iterable, Iterator, Sequence

import numpy as np


def assign_bucket(frames: int, height: int, width: int,
                  buckets: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The bucket (frames, height, width) nearest in aspect ratio, then the longest whose frame
    count the clip covers (clips are cut, never padded). Raises if none fits."""
    aspect = np.log(width / height)
    fitting = [b for b in buckets if b[0] <= frames]
    if not fitting:
        raise ValueError(f"clip of {frames} frames is shorter than every bucket {sorted(buckets)}")
    best = min(abs(np.log(b[2] / b[1]) - aspect) for b in fitting)
    same_aspect = [b for b in fitting if abs(abs(np.log(b[2] / b[1]) - aspect) - best) < 1e-9]
    return max(same_aspect, key=lambda b: b[0])


def bucket_batches(examples: Iterable[dict], batch_size: int, *, key: str = "video",
                   drop_remainder: bool = True) -> Iterator[dict]:
    """Group examples (dicts of arrays, already cut to a bucket shape) by the shape of
    `examples[key]` and yield stacked batches of `batch_size` as soon as a bucket fills."""
    pending = collections.defaultdict(list)
    for example in examples:
        shape = np.shape(example[key])
        pending[shape].append(example)
        if len(pending[shape]) == batch_size:
            group = pending.pop(shape)
            yield {k: np.stack([e[k] for e in group]) for k in group[0]}
    if not drop_remainder:
        for group in pending.values():
            yield {k: np.stack([e[k] for e in group]) for k in group[0]}
