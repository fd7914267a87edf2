"""Data-build config for Movie Gen's supervised fine-tuning set (experiments/moviegen_30b.py:sft):

    mgen data build --source=folder:CURATED --out=data/moviegen_sft --config=experiments/data_sft.py

Curated clips of 10.6-16 s, no images, in 256-frame buckets at two rates per aspect ratio:
16 s at 16 fps and 10.67 s at 24 fps (mgen_jax/configs/data_build.py sft_data_build_config). A
clip of 16 s goes to the 16 fps bucket, a shorter one (10.6-16 s) to the 24 fps bucket; each
record keeps its rate, so each prompt's FPS tag says which ("FPS-16" / "FPS-24").
"""
from mgen_jax.configs.data_build import sft_data_build_config


def get_config(arg=None):
    if arg is not None:
        raise ValueError(f"data_sft arg {arg!r} unknown (takes none)")
    return sft_data_build_config()
