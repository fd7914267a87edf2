"""Held-out evaluation: generate every held-out (colour, shape, direction) combination from its
canonical prompt, measure the attributes of the generated videos, write eval.json + media."""
import os

import numpy as np

from data_pipelines.shapes import canonical_caption, held_out_combos, render_clip
from mgen_jax.evaluation.attributes import evaluate_videos
from mgen_jax.evaluation.dataset_samples import evaluate_dataset_samples
from mgen_jax.evaluation.json_report import write_json_report
from mgen_jax.models.tae.video_range import psnr, video_to_float
from mgen_jax.inference.loading import load_text_to_video
from mgen_jax.inference.video_io import write_contact_sheet, write_mp4
from mgen_jax.workdir import eval_dir, eval_report_path


def evaluate_pipeline(pipeline, out_dir: str, *, samples_per_prompt: int, seed: int,
                      steps: int, guidance_scale: float, batch_size: int, fps: int,
                      sheet_frames: int) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    combos = [c for c in held_out_combos() for _ in range(samples_per_prompt)]
    prompts = [canonical_caption(*c) for c in combos]
    videos = pipeline.generate(prompts, seed=seed, steps=steps, guidance_scale=guidance_scale,
                               batch_size=batch_size)
    result = evaluate_videos(list(videos), combos)
    files = []
    for i, (prompt, video) in enumerate(zip(prompts, videos)):
        name = f"{i:03d}_{prompt.replace(' ', '_')}.mp4"
        write_mp4(os.path.join(out_dir, name), video, fps=fps, scale=4)
        files.append(name)
    # A row per held-out prompt, its samples side by side, frames left to right.
    write_contact_sheet(os.path.join(out_dir, "contact_sheet.png"), list(videos),
                        prompts[::samples_per_prompt], frames_per_video=sheet_frames,
                        videos_per_row=samples_per_prompt)
    report = {
        "reconstruction": reconstruction_report(pipeline, combos, seed),
        "held_out_combos": [list(c) for c in held_out_combos()],
        "samples_per_prompt": samples_per_prompt, "sample_steps": steps, "guidance_scale": guidance_scale,
        "seed": seed,
        "accuracy": {k: result[f"{k}_accuracy"] for k in ("colour", "shape", "direction", "all")},
        "chance": {"colour": 1 / 6, "shape": 1 / 3, "direction": 1 / 4},
        "count": result["count"],
        "samples": [{"prompt": p, "file": f, **{k: pred[k] for k in ("colour", "shape", "direction")}}
                    for p, f, pred in zip(prompts, files, result["predictions"])],
    }
    return report


def reconstruction_report(pipeline, combos, seed: int) -> dict:
    """The TAE's ceiling: attribute accuracy and PSNR of autoencoded ground-truth held-out clips.

    Generated samples are decoded by the same TAE, so their accuracy can only approach these."""
    data = pipeline.cfg.data
    rng = np.random.default_rng(seed)
    clips = np.stack([render_clip(*c, frames=data.frames, height=data.height, width=data.width,
                                  rng=rng) for c in combos])
    recon = pipeline.reconstruct(clips)
    result = evaluate_videos(list(recon), combos)
    return {"psnr_db": float(psnr(video_to_float(recon), video_to_float(clips))),
            "accuracy": {k: result[f"{k}_accuracy"] for k in ("colour", "shape", "direction", "all")},
            "count": result["count"]}


def evaluate_workdir(workdir: str, out: str | None = None) -> dict:
    pipeline = load_text_to_video(workdir)
    ev = pipeline.cfg.eval
    if pipeline.cfg.data.source != "shapes":  # a built dataset: no attributes to score
        report = evaluate_dataset_samples(
            pipeline, eval_dir(workdir), prompts=ev.prompts, samples_per_prompt=ev.samples_per_prompt,
            seed=ev.seed, steps=ev.sample_steps, guidance_scale=ev.guidance_scale,
            batch_size=ev.batch_size, sheet_frames=ev.contact_sheet_frames)
        out = write_json_report(report, out or eval_report_path(workdir))
        print(f"sampled {len(report['samples'])} videos of the dataset's captions; TAE "
              f"reconstruction of those clips: PSNR {report['reconstruction']['psnr_db']:.1f} dB "
              f"-> {out}")
        return report
    report = evaluate_pipeline(pipeline, eval_dir(workdir),
                               samples_per_prompt=ev.samples_per_prompt, seed=ev.seed,
                               steps=ev.sample_steps, guidance_scale=ev.guidance_scale,
                               batch_size=ev.batch_size, fps=pipeline.cfg.data.fps,
                               sheet_frames=ev.contact_sheet_frames)
    out = write_json_report(report, out or eval_report_path(workdir))
    acc, rec = report["accuracy"], report["reconstruction"]
    print(f"TAE reconstruction of held-out clips: PSNR {rec['psnr_db']:.1f} dB, accuracy colour "
          f"{rec['accuracy']['colour']:.3f} shape {rec['accuracy']['shape']:.3f} direction "
          f"{rec['accuracy']['direction']:.3f}")
    print(f"held-out accuracy: colour {acc['colour']:.3f}  shape {acc['shape']:.3f}  "
          f"direction {acc['direction']:.3f}  all {acc['all']:.3f}  -> {out}")
    return report
