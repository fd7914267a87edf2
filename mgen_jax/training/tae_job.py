"""The `tae` job behind `mgen train` for experiments/tae_*.py: data -> TAE -> reconstruction eval.

The same TAE phase as the text-to-video job (same checkpoints, joint image/video batches), run on
its own, then scored on held-out clips (evaluation/reconstruction.py) into <workdir>/eval.json."""
import os

import ml_collections

from mgen_jax.evaluation.json_report import write_json_report
from mgen_jax.training.text_to_video_job import load_workdir_config, prepare_workdir, train_tae


def run_tae(cfg: ml_collections.ConfigDict, workdir: str, *, show_progress: bool = True,
            evaluate: bool = True) -> dict | None:
    ctx = prepare_workdir(cfg, workdir, show_progress)
    train_tae(ctx)
    return evaluate_tae_workdir(workdir) if evaluate else None


def evaluate_tae_workdir(workdir: str, out: str | None = None) -> dict:
    from mgen_jax.evaluation.reconstruction import reconstruction_metrics
    from mgen_jax.inference.loading import load_tae
    cfg = load_workdir_config(workdir)
    tae, params, step = load_tae(workdir)
    report = reconstruction_metrics(
        tae, params, num_clips=cfg.eval.tae_clips, frames=cfg.data.frames, height=cfg.data.height,
        width=cfg.data.width, long_frames=cfg.eval.tae_long_frames, seed=cfg.eval.seed + 1000)
    report = {"job": "tae", "tae_step": step, "tae_params": tae.num_params(), **report}
    out = write_json_report(report, out or os.path.join(workdir, "eval.json"))
    v, i = report["video"], report["image"]
    print(f"TAE held-out reconstruction: video PSNR {v['psnr_db']:.2f} dB SSIM {v['ssim']:.4f}, "
          f"image PSNR {i['psnr_db']:.2f} dB SSIM {i['ssim']:.4f} -> {out}")
    if "long_clip" in report:
        lc = report["long_clip"]
        print(f"{lc['frames']}-frame clips: untiled {lc['untiled_psnr_db']:.2f} dB, tiled "
              f"{lc['tiled_psnr_db']:.2f} dB; tiled vs untiled RMS {lc['tiled_vs_untiled_rms']:.3f} "
              f"(reconstruction RMS {lc['reconstruction_rms']:.3f}, uint8 levels)")
    return report
