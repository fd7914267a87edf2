"""Data-build config for small media: what the tests and the CPU experiments build with.

    mgen data build --source=folder:PATH --out=DIR --config=experiments/data_tiny.py

Movie Gen's curation stages with thresholds for small, short media: sources of at least 64 px a
side, single-shot clips of 1-4 s at 8 fps, nothing trimmed, and a tiny bucket table (3 aspect
ratios x 3 durations at 32-48 px, multiples of the tiny TAE's 8x compression), so that a
built folder trains the tiny TAE + DiT on a CPU (experiments/folder_t2v.py).
"""
from mgen_jax.configs.data_build import bucket_table, data_build_config

TINY_ASPECTS = ((32, 32), (32, 48), (48, 32))  # square, landscape, portrait (height, width)
TINY_DURATIONS = (1.0, 2.0, 4.0)


def get_config(arg=None):
    if arg is not None:
        raise ValueError(f"data_tiny arg {arg!r} unknown (takes none)")
    cfg = data_build_config()
    cfg.update(target_fps=8.0, min_seconds=1.0, max_seconds=4.0, trim_seconds=0.0,
               min_width=64, min_height=64, records_per_shard=16, shapes_clips=64)
    cfg.buckets = bucket_table(TINY_ASPECTS, TINY_DURATIONS, cfg.target_fps)
    return cfg
