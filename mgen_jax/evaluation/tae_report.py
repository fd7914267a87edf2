"""The `tae` job's evaluation: held-out reconstruction (PSNR, SSIM, tiled vs untiled decode)
of a workdir's latest TAE checkpoint, into <workdir>/eval.json."""
from mgen_jax.evaluation.json_report import write_json_report
from mgen_jax.evaluation.reconstruction import reconstruction_metrics
from mgen_jax.inference.loading import load_tae
from mgen_jax.workdir import eval_report_path, load_workdir_config


def evaluate_tae_workdir(workdir: str, out: str | None = None) -> dict:
    cfg = load_workdir_config(workdir)
    tae, params, step = load_tae(workdir)
    report = reconstruction_metrics(
        tae, params, num_clips=cfg.eval.tae_clips, frames=cfg.data.frames, height=cfg.data.height,
        width=cfg.data.width, long_frames=cfg.eval.tae_long_frames, seed=cfg.eval.seed + 1000)
    report = {"job": "tae", "tae_step": step, "tae_params": tae.num_params(), **report}
    out = write_json_report(report, out or eval_report_path(workdir))
    v, i = report["video"], report["image"]
    print(f"TAE held-out reconstruction: video PSNR {v['psnr_db']:.2f} dB SSIM {v['ssim']:.4f}, "
          f"image PSNR {i['psnr_db']:.2f} dB SSIM {i['ssim']:.4f} -> {out}")
    if "long_clip" in report:
        lc = report["long_clip"]
        print(f"{lc['frames']}-frame clips: untiled {lc['untiled_psnr_db']:.2f} dB, tiled "
              f"{lc['tiled_psnr_db']:.2f} dB; tiled vs untiled RMS {lc['tiled_vs_untiled_rms']:.3f} "
              f"(reconstruction RMS {lc['reconstruction_rms']:.3f}, uint8 levels)")
    return report
