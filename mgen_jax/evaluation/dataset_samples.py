"""Evaluation of a job trained on a built dataset (data.source=records), which has no held-out
attributes to score: sample the captions of the dataset's first clips of the evaluation shape
(data.frames x height x width), write the videos and a contact sheet, and measure the TAE's
reconstruction PSNR on those clips (the ceiling of what the samples can look like)."""
import os

import grain
import numpy as np

from data_pipelines.clip_records import decode_clip_record, load_clips_manifest
from mgen_jax.inference.video_io import write_contact_sheet, write_mp4
from mgen_jax.models.tae.video_range import psnr, video_to_float


def evaluation_clips(data_dir: str, frames: int, height: int, width: int, count: int) -> list:
    """The first `count` records (shard order) of the bucket of this clip shape."""
    manifest = load_clips_manifest(data_dir)
    names = [n for n, b in manifest["buckets"].items()
             if (b["frames"], b["height"], b["width"]) == (frames, height, width)]
    if not names:
        raise ValueError(f"{data_dir} has no bucket of data.frames x height x width = {frames} x "
                         f"{height} x {width} to evaluate at (buckets: {sorted(manifest['buckets'])})")
    paths = [os.path.join(data_dir, s["path"]) for s in manifest["shards"] if s["bucket"] == names[0]]
    source = grain.sources.ArrayRecordDataSource(paths)
    return [decode_clip_record(source[i]) for i in range(min(count, len(source)))]


def evaluate_dataset_samples(pipeline, out_dir: str, *, prompts: int, samples_per_prompt: int,
                             seed: int, steps: int, guidance_scale: float, batch_size: int,
                             sheet_frames: int) -> dict:
    data = pipeline.cfg.data
    clips = evaluation_clips(data.dir, data.frames, data.height, data.width, prompts)
    captions = [c["caption"] for c in clips for _ in range(samples_per_prompt)]
    videos = pipeline.generate(captions, seed=seed, steps=steps, guidance_scale=guidance_scale,
                               batch_size=batch_size)
    os.makedirs(out_dir, exist_ok=True)
    files = []
    for i, (caption, video) in enumerate(zip(captions, videos)):
        files.append(f"{i:03d}.mp4")
        write_mp4(os.path.join(out_dir, files[-1]), video, fps=data.fps, scale=4)
    write_contact_sheet(os.path.join(out_dir, "contact_sheet.png"), list(videos),
                        captions[::samples_per_prompt], frames_per_video=sheet_frames,
                        videos_per_row=samples_per_prompt)
    originals = np.stack([c["video"] for c in clips])
    recon = pipeline.reconstruct(originals)
    return {
        "dataset": data.dir, "shape": [data.frames, data.height, data.width],
        "samples_per_prompt": samples_per_prompt, "sample_steps": steps,
        "guidance_scale": guidance_scale, "seed": seed,
        "reconstruction": {"psnr_db": float(psnr(video_to_float(recon),
                                                 video_to_float(originals))),
                           "clips": len(clips)},
        "samples": [{"prompt": c, "file": f} for c, f in zip(captions, files)],
    }
