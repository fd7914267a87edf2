"""`mgen bench data`: how fast `mgen data build` curates, where its time goes, and whether the
Grain loader keeps the tiny DiT fed.

On a folder of generated media (data_pipelines/media/sample_folder.py: 66 files, videos of
several codecs and sizes, images, a GIF, bad files) built with the tiny config
(configs/data_build.py tiny_data_build_config):
  * build rate: clips written per second of `build_dataset` on one DirectRunner worker
    (in_memory), Beam's set-up and the shuffles included;
  * stage shares: the same items curated in this process with each stage's function timed
    (decode, scene cuts, resample + motion, resize + crop, perceptual hash, record encode); the
    shares are of the summed per-item work (the rest of the build's wall time is Beam);
  * loader rate: batches per second from the bucketed, 1:10 image/video loader over the built
    records (batch 16 per bucket, as experiments/folder_t2v.py), against the tiny DiT's train
    steps per second at batch 16 on 16 x 32 x 32 clips (the consumer; cached text embeddings).
"""
import contextlib
import os
import tempfile
import time

from data_pipelines.bucket_batching import bucket_batch_sizes, load_manifest
from data_pipelines.build.driver import build_dataset
from data_pipelines.build.sources import open_source
from data_pipelines.clip_records import encode_clip_record
from data_pipelines.curation import curate as curate_module
from data_pipelines.curation import motion, phash, resize, scenes
from data_pipelines.media import decode as decode_module
from data_pipelines.media.decode import MediaError
from data_pipelines.media.sample_folder import make_media_folder
from data_pipelines.records_pipeline import make_records_iterator
from mgen_jax.benchmarks.dit_step import dit_step_timing
from mgen_jax.benchmarks.matmul_peak import machine_info
from mgen_jax.configs.data_build import tiny_data_build_config
from mgen_jax.configs.recipes import tiny_tae_recipe
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.validation import validate

# (stage, module, function name): the functions curate_media calls through their modules, so
# wrapping the module attribute times every call.
_STAGES = (("scene_cuts", scenes, "scene_cuts"), ("motion", motion, "motion_score"),
           ("resize_crop", resize, "resize_and_crop"), ("phash", phash, "clip_hashes"))


@contextlib.contextmanager
def _timed_stages(totals: dict):
    """Wrap each stage function so its wall seconds add up in totals[stage]."""
    originals = [(module, name, getattr(module, name)) for _, module, name in _STAGES]

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[stage] = totals.get(stage, 0.0) + time.perf_counter() - start
        return wrapper

    try:
        for (stage, module, name), (_, _, fn) in zip(_STAGES, originals):
            setattr(module, name, timed(stage, fn))
        yield totals
    finally:
        for module, name, fn in originals:
            setattr(module, name, fn)


def stage_seconds(folder: str, cfg) -> dict:
    """Per-stage seconds of curating every item of `folder` in this process."""
    source = open_source(f"folder:{folder}")
    totals = {}
    with _timed_stages(totals):
        for item in source.items(cfg):
            caption, camera = source.caption(item, cfg)
            if caption is None:
                continue
            start = time.perf_counter()
            try:
                media = decode_module.decode_media(os.path.join(folder, item["id"]),
                                                   max_seconds=cfg.max_source_seconds or None)
            except MediaError:
                continue
            finally:
                totals["decode"] = totals.get("decode", 0.0) + time.perf_counter() - start
            start = time.perf_counter()
            clips, _ = curate_module.curate_media(item["id"], media, caption, cfg, camera=camera)
            totals["curate_total"] = totals.get("curate_total", 0.0) + time.perf_counter() - start
            start = time.perf_counter()
            for clip in clips:
                encode_clip_record(video=clip.video, caption=clip.caption, fps=clip.fps,
                                   native_fps=clip.native_fps, source_id=clip.source_id,
                                   bucket=clip.bucket, store=cfg.store)
            totals["encode_record"] = totals.get("encode_record", 0.0) + time.perf_counter() - start
    staged = sum(totals.get(s, 0.0) for s, _, _ in _STAGES)
    totals["other_curation"] = max(totals.pop("curate_total", 0.0) - staged, 0.0)
    return totals


def loader_rate(data_dir: str, batch_size: int, batches: int) -> dict:
    sizes = bucket_batch_sizes(load_manifest(data_dir), batch_size=batch_size)
    iterator = make_records_iterator(data_dir, batch_sizes=sizes, seed=0,
                                     mixture={"images": 1.0, "videos": 10.0},
                                     small_buckets="repeat")  # as folder_t2v: a few clips each
    next(iterator)  # threads started, first reads done
    start = time.perf_counter()
    images = 0
    for _ in range(batches):
        images += int(next(iterator)["is_image"][0])
    seconds = time.perf_counter() - start
    return {"batches_per_second": batches / seconds, "batches": batches,
            "image_batch_share": images / batches}


def tiny_dit_consumption(batch_size: int, steps: int) -> dict:
    """Train steps per second of the tiny DiT of experiments/folder_t2v.py (1x1x1 patches) on
    16 x 32 x 32 clips with cached text embeddings."""
    cfg = default_experiment()
    tiny_tae_recipe(cfg)
    cfg.dit.update(patch_size=(1, 1, 1), scan_unroll=4)
    cfg.text.precompute = True
    cfg.mesh.update(data=1, fsdp=1, context=1, tensor=1)
    cfg.dit_train.batch_size = batch_size
    timing = dit_step_timing(validate(cfg), steps=steps, warmup=2)
    return {"steps_per_second": 1.0 / timing["step_seconds"],
            "seconds_per_step": timing["step_seconds"], "batch_size": batch_size}


def data_bench(quick: bool = False) -> dict:
    cfg = tiny_data_build_config()
    batch = 16
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = os.path.join(tmp, "media"), os.path.join(tmp, "built")
        expected = make_media_folder(folder, seed=0)
        start = time.perf_counter()
        summary = build_dataset(f"folder:{folder}", out, cfg, show_progress=False,
                                beam_args=["--direct_num_workers=1",
                                           "--direct_running_mode=in_memory"])
        build_seconds = time.perf_counter() - start
        stages = stage_seconds(folder, cfg)
        loader = loader_rate(out, batch, 50 if quick else 400)
    consumer = tiny_dit_consumption(batch, 3 if quick else 10)
    work = sum(stages.values())
    clips = summary["clips_written"] + summary["images_written"]
    return {
        "machine": machine_info(),
        "media_files": len(expected["good"]) + len(expected["bad"]) + len(expected["duplicates"]),
        "build": {"seconds": build_seconds, "clips_written": clips, "seen": summary["seen"],
                  "clips_per_second_per_worker": clips / build_seconds,
                  "items_per_second_per_worker": summary["seen"] / build_seconds,
                  "per_item_work_seconds": work,
                  "beam_overhead_share": max(build_seconds - work, 0.0) / build_seconds},
        "stage_share": {stage: seconds / work for stage, seconds in sorted(stages.items())},
        "loader": loader,
        "tiny_dit": consumer,
        "summary": {
            "build_clips_per_second_per_worker": clips / build_seconds,
            "loader_batches_per_second": loader["batches_per_second"],
            "dit_steps_per_second": consumer["steps_per_second"],
            "loader_over_consumption": loader["batches_per_second"] / consumer["steps_per_second"],
            "largest_stage": max(stages, key=stages.get),
        },
    }
