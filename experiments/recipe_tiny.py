"""Movie Gen's recipe (experiments/moviegen_30b.py) at the quickstart's size, on CPU in minutes:
every stage a short `mgen train` initialised from the previous stage's workdir.

    mgen data build --source=shapes --out=data/recipe_tiny/low --config=experiments/data_recipe_tiny.py:low
    mgen data build --source=shapes --out=data/recipe_tiny/high --config=experiments/data_recipe_tiny.py:high
    mgen train --config=experiments/recipe_tiny.py:tae      --workdir=runs/recipe_tiny/tae
    mgen train --config=experiments/recipe_tiny.py:t2i      --workdir=runs/recipe_tiny/t2i
    mgen train --config=experiments/recipe_tiny.py:t2iv     --workdir=runs/recipe_tiny/t2iv
    mgen train --config=experiments/recipe_tiny.py:t2iv_hi  --workdir=runs/recipe_tiny/t2iv_hi
    mgen train --config=experiments/recipe_tiny.py:sft      --workdir=runs/recipe_tiny/sft
    mgen train --config=experiments/recipe_tiny.py:sft_b    --workdir=runs/recipe_tiny/sft_b
    mgen average --out=runs/recipe_tiny/average runs/recipe_tiny/sft runs/recipe_tiny/sft_b
    mgen train --config=experiments/recipe_tiny.py:averaged --workdir=runs/recipe_tiny/averaged

(add `--skip-eval` to skip each stage's sampled evaluation). Stages, and what they stand for:

  tae       the tiny TAE (experiments/tae_tiny.py's) on the low-resolution clips and stills
  t2i       "256 px" text-to-image: 32 x 32 stills, one latent frame, position tables (1, 4, 4)
  t2iv      "256 px" joint image/video, images : videos = 1 : 10, three aspect ratios: spatial
            tables doubled to 8 x 8 by *extension* (old rows kept: a 32 x 32 image gives the
            same output as before), a temporal table of 2 latent frames added
  t2iv_hi   "768 px": the same at 96 px (x3); spatial tables *stretched* x3 to 24 x 24; the LR
            halved when the held-out validation loss stops improving (plateau)
  sft       fine-tuning on the high-resolution videos (no images), cosine LR
  sft_b     a second fine-tuning run (another seed and LR), for averaging
  averaged  no training: the average of the SFT runs (`mgen average`), validated at step 0

Every DiT stage logs its held-out validation loss (16 clips of its own bucket, never trained on,
at five fixed t) at step 0 (the model it starts from), every 20 steps and at its end, as phase
`dit_val` in metrics.jsonl. The DiT stages reuse the `tae` stage's TAE unchanged
(tae_train.init_from, 0 steps). Paths default to data/recipe_tiny/{low,high} and
runs/recipe_tiny/<stage>; override data.dir and the init_from keys to put them elsewhere.
"""
from mgen_jax.configs.recipes import tiny_tae_recipe
from mgen_jax.configs.schema import default_experiment

RUNS, DATA = "runs/recipe_tiny", "data/recipe_tiny"
# stage: (data build, frames x size, position tables, buckets, mixture, steps, lr, schedule,
#         previous stage)
STAGES = {
    "t2i": dict(data="low", frames=1, size=32, tables=(1, 4, 4), buckets="i32x32",
                images=1.0, videos=0.0, steps=60, lr=1e-3, schedule="constant", previous=None),
    "t2iv": dict(data="low", frames=16, size=32, tables=(2, 8, 8), buckets="",
                 images=1.0, videos=10.0, steps=60, lr=1e-3, schedule="constant",
                 previous="t2i"),
    "t2iv_hi": dict(data="high", frames=16, size=96, tables=(2, 24, 24), buckets="",
                    images=1.0, videos=10.0, steps=40, lr=1e-3, schedule="plateau",
                    previous="t2iv"),
    "sft": dict(data="high", frames=16, size=96, tables=(2, 24, 24), buckets="",
                images=0.0, videos=1.0, steps=30, lr=5e-4, schedule="cosine",
                previous="t2iv_hi"),
    "sft_b": dict(data="high", frames=16, size=96, tables=(2, 24, 24), buckets="",
                  images=0.0, videos=1.0, steps=30, lr=2.5e-4, schedule="cosine",
                  previous="t2iv_hi", seed=1),
    "averaged": dict(data="high", frames=16, size=96, tables=(2, 24, 24), buckets="",
                     images=0.0, videos=1.0, steps=0, lr=5e-4, schedule="cosine",
                     previous="average"),
}


def _common(cfg):
    tiny_tae_recipe(cfg)  # the TAE of experiments/tae_tiny.py
    cfg.seed = 0
    cfg.data.update(source="records", batching="fixed", small_buckets="repeat", fps=8)
    cfg.tae.image_batches = 0  # images come from the image buckets (data.mixture)
    cfg.flow.latent_sample = "mean"
    cfg.text.update(fps_tag=True, precompute=True)
    cfg.dit.update(patch_size=(1, 1, 1), scan_unroll=4)  # as in experiments/quickstart.py
    cfg.eval.update(prompts=4, samples_per_prompt=1, sample_steps=20, guidance_scale=5.0,
                    tae_clips=8, tae_long_frames=0)
    return cfg


def get_config(arg=None):
    cfg = _common(default_experiment())
    if arg == "tae":
        cfg.job = "tae"
        # One video and one image shape: each bucket shape is a compiled step (the TAE is
        # convolutional: the other aspect ratios need no training of their own).
        cfg.data.update(dir=f"{DATA}/low", frames=16, height=32, width=32,
                        buckets="v16x32x32,i32x32")
        cfg.data.mixture.update(images=1.0, videos=3.0)
        cfg.tae_train.update(steps=200, batch_size=4, log_every=50, checkpoint_every=200)
        return cfg
    if arg not in STAGES:
        raise ValueError(f"recipe_tiny stage {arg!r} unknown; choose 'tae' or one of "
                         f"{list(STAGES)}")
    stage = STAGES[arg]
    cfg.seed = stage.get("seed", 0)
    cfg.data.update(dir=f"{DATA}/{stage['data']}", frames=stage["frames"],
                    height=stage["size"], width=stage["size"], buckets=stage["buckets"])
    cfg.data.mixture.update(images=stage["images"], videos=stage["videos"])
    cfg.tae_train.update(init_from=f"{RUNS}/tae", steps=0)  # the tae stage's TAE, unchanged
    cfg.tae_optimizer.warmup_steps = 0
    cfg.dit.max_positions = stage["tables"]
    if stage["previous"]:
        cfg.dit_train.init_from = f"{RUNS}/{stage['previous']}"
    cfg.dit_train.update(steps=stage["steps"], batch_size=8, log_every=10,
                         checkpoint_every=max(stage["steps"], 1), validate_every=20,
                         validation_clips=16)
    cfg.dit_optimizer.update(lr=stage["lr"], warmup_steps=min(10, stage["steps"]),
                             weight_decay=0.0,
                             schedule=stage["schedule"])
    if stage["schedule"] == "plateau":  # as the 768 px stage: halve on the validation loss
        cfg.dit_optimizer.update(plateau_on="validation_loss", plateau_factor=0.5,
                                 plateau_patience=20, plateau_min_scale=1 / 6)
    return cfg
