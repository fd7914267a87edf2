"""Data-build configs of the tiny Movie Gen recipe (experiments/recipe_tiny.py), on Shapes:

    mgen data build --source=shapes --out=data/recipe_tiny/low --config=experiments/data_recipe_tiny.py:low
    mgen data build --source=shapes --out=data/recipe_tiny/high --config=experiments/data_recipe_tiny.py:high

`low` stands for the paper's 256 px data: 2 s clips at 8 fps (16 frames) at 32 x 32, 32 x 48 and
48 x 32 (the tiny TAE's 4 x 4 to 4 x 6 latents) and 32 x 32 stills, 160 clips and 128 stills.
`high` stands for its 768 px data: square clips and stills at x3 the resolution (96 x 96), where
the recipe stretches the DiT's spatial position tables x3 (one aspect ratio: each bucket shape is
one more compiled step in every stage that reads it; the aspect ratios are `low`'s to show). Stills are colour-and-shape
captioned frames (data_pipelines/build/sources.py), the images of the joint stages.
"""
from mgen_jax.configs.data_build import bucket_table, tiny_data_build_config

ASPECTS = {"low": ((32, 32), (32, 48), (48, 32)), "high": ((96, 96),)}


def get_config(arg=None):
    if arg not in ASPECTS:
        raise ValueError(f"data_recipe_tiny arg {arg!r} unknown (use 'low' or 'high')")
    cfg = tiny_data_build_config()
    # Every clip exactly 2 s (a Shapes source renders max_seconds): one video bucket per aspect.
    cfg.update(min_seconds=2.0, max_seconds=2.0, shapes_clips=160, shapes_images=128,
               records_per_shard=64)
    if arg == "high":  # rendered large enough for the x3 buckets (the source scales up to min)
        cfg.update(min_width=96, min_height=96)
    # Videos at three aspect ratios, stills square only: each bucket shape is one more
    # compiled step per stage, and the stills' role is the mix, not the aspect ratios.
    table = bucket_table(ASPECTS[arg], (2.0,), cfg.target_fps)
    square = ASPECTS[arg][0]
    cfg.buckets = [b for b in table if b["kind"] == "video" or (b["height"], b["width"]) == square]
    return cfg
