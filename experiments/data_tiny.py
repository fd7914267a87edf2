"""Data-build config for small media: what the tests and the CPU experiments build with.

    mgen data build --source=folder:PATH --out=DIR --config=experiments/data_tiny.py

Movie Gen's curation stages with thresholds for small, short media
(mgen_jax/configs/data_build.py tiny_data_build_config): sources of at least 64 px a side, read
up to 30 s, single-shot clips of 1-4 s at 8 fps, nothing trimmed, and a tiny bucket table (3
aspect ratios x 3 durations at 32-48 px, multiples of the tiny TAE's 8x compression, and 1-frame
image buckets), so that a built folder trains the tiny TAE + DiT on a CPU
(experiments/folder_t2v.py).
"""
from mgen_jax.configs.data_build import tiny_data_build_config


def get_config(arg=None):
    if arg is not None:
        raise ValueError(f"data_tiny arg {arg!r} unknown (takes none)")
    return tiny_data_build_config()
