"""Training on datasets built by `mgen data build`: a folder of generated media is built into
bucketed records, then `mgen train` (experiments/folder_t2v.py) trains the tiny TAE and DiT on
them and samples; each train step compiles once per bucket shape, not per batch. A TFDS dataset
built the same way yields the loader's batches the folder_t2v job trains on (the training path
after the records is the folder's, so it is not run twice)."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines.clip_records import load_clips_manifest
from data_pipelines.media.sample_folder import make_media_folder
from data_pipelines.records_pipeline import make_records_iterator
from data_pipelines.records_source import check_bucket_shapes
from mgen_jax.configs.loading import load_config

# Whole build + train + eval jobs in subprocesses: minutes on 2 cores.
pytestmark = pytest.mark.slow

FOLDER_SMOKE = "experiments/folder_t2v.py:smoke"
DATA_TINY = "experiments/data_tiny.py"


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = ""  # one CPU device, as a user's laptop run
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_LOG_COMPILES"] = "1"  # every XLA compile logged with its argument shapes
    return env


def _mgen(*args):
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", *args], env=_env(),
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _step_compiles(log: str, name: str) -> list[str]:
    """Argument signatures of the compiles of the jitted function `name` (JAX_LOG_COMPILES)."""
    return re.findall(rf"Compiling jit\({name}\) with global shapes and types (.*?)\. "
                      "Argument mapping", log, flags=re.S)


def _train_and_check(data_dir, workdir, buckets: str, steps: int = 6, *overrides) -> dict:
    proc = _mgen("train", f"--config={FOLDER_SMOKE}", f"--workdir={workdir}", "--no-progress",
                 f"--config.data.dir={data_dir}", f"--config.data.buckets={buckets}",
                 f"--config.tae_train.steps={steps}", f"--config.dit_train.steps={steps}",
                 *overrides)
    report = json.loads((workdir / "eval.json").read_text())
    assert report["samples"] and np.isfinite(report["reconstruction"]["psnr_db"])
    for sample in report["samples"]:
        assert (workdir / "eval" / sample["file"]).stat().st_size > 0
    assert (workdir / "eval" / "contact_sheet.png").exists()
    return {"log": proc.stderr + proc.stdout, "report": report}


def test_folder_build_then_train_compiles_once_per_bucket_and_samples(tmp_path):
    make_media_folder(str(tmp_path / "media"), seed=0)
    built = tmp_path / "built"
    _mgen("data", "build", f"--source=folder:{tmp_path / 'media'}", f"--out={built}",
          f"--config={DATA_TINY}", "--no-progress")
    manifest = load_clips_manifest(built)
    chosen = ["v16x32x32", "v16x32x48", "i32x32"]  # two video shapes and an image shape
    assert all(manifest["buckets"][b]["num_records"] > 0 for b in chosen)
    run = _train_and_check(built, tmp_path / "run", ",".join(chosen), steps=8)
    # Every train step (training/sharded_training.py jits it as `traced_step`) compiles once per
    # batch shape it met, however many of its 8 batches had that shape: the TAE's and the DiT's
    # at most one each per bucket (2-3 of the 3 buckets come up in 8 mixed batches), not 16.
    steps = _step_compiles(run["log"], "traced_step")
    assert 2 * 2 <= len(steps) <= 2 * len(chosen), run["log"][-3000:]
    assert len(steps) == len(set(steps)), "a train step compiled twice for the same shapes"
    assert run["report"]["shape"] == [16, 32, 32]


def test_a_tfds_dataset_builds_and_trains(tmp_path):
    import tensorflow_datasets as tfds

    class TinyClips(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "video": tfds.features.Tensor(shape=(None, 64, 64, 3), dtype=np.uint8),
                "caption": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            rng = np.random.default_rng(0)
            for i in range(6):  # a disc over stripes of its own width, both moving, 2 s at 16 fps
                yy, xx = np.mgrid[:64, :64]
                frames = []
                for t in range(32):
                    stripes = ((xx + 3 * yy + t // 2) // (4 + 3 * i)) % 2 * 150
                    cx, cy = 12 + t * 1.2, 20 + (i % 3) * 12
                    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 80
                    frame = np.stack([stripes, 255 - stripes, np.full_like(xx, 40 * i)], -1)
                    frame[disc] = (240, 200 - 20 * i, 30)
                    frames.append(frame.astype(np.uint8))
                yield i, {"video": np.stack(frames), "caption": f"a ball number {i} drifting"}

    TinyClips.code_path = None  # defined in a test module: no package resources to find
    tfds_dir = tmp_path / "tfds"
    TinyClips(data_dir=str(tfds_dir), file_format="array_record").download_and_prepare()
    built = tmp_path / "built"
    _mgen("data", "build", "--source=tfds:tiny_clips:train", f"--tfds_data_dir={tfds_dir}",
          f"--out={built}", f"--config={DATA_TINY}", "--config.tfds_fps=16.0", "--no-progress")
    manifest = load_clips_manifest(built)
    filled = [n for n, b in manifest["buckets"].items() if b["num_records"]]
    assert manifest["num_records"] >= 6 and filled == ["v16x32x32"]
    cfg = load_config(FOLDER_SMOKE, [f"data.dir={built}", "data.buckets=v16x32x32",
                                     "data.mixture.images=0.0"])
    check_bucket_shapes(cfg, manifest)  # what `mgen train` checks before its first step
    it = make_records_iterator(built, batch_sizes={"v16x32x32": 2}, seed=0,
                               mixture=dict(cfg.data.mixture), only_buckets=["v16x32x32"],
                               small_buckets=cfg.data.small_buckets)
    try:
        batches = [next(it) for _ in range(4)]
    finally:
        it.close()
    for batch in batches:
        assert batch["video"].shape == (2, 16, 32, 32, 3) and batch["video"].dtype == np.uint8
        assert all(c.startswith("a ball number") for c in batch["caption"])
