"""The TAE experiments: the tiny one trains and evaluates end to end through `mgen` (smoke size);
the paper-size one builds abstractly and reports its parameter count."""
import json
import math
import os
import subprocess
import sys

import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_tae
from tests.compile_flags import FAST_COMPILE


def test_paper_size_tae_builds_abstractly_and_counts_its_parameters():
    cfg = load_config("experiments/tae_paper.py")
    tae = build_tae(cfg)  # abstract: nothing is allocated
    n = tae.num_params()
    print(f"paper-size TAE parameters: {n:,}")
    # SD-VAE-sized spatial backbone (~84M) plus the temporal convs and attention.
    assert 84e6 < n < 200e6, n
    assert (cfg.tae.ch, tuple(cfg.tae.ch_mult), cfg.tae.z_channels) == (128, (1, 2, 4, 4), 16)


@pytest.mark.slow  # ~90 s end to end; its GAN, OPL and SSIM parts have their own unit tests
def test_tiny_tae_job_trains_with_gan_and_opl_and_reports_psnr_and_ssim(tmp_path):
    """Every optional loss but LPIPS on (LPIPS needs real VGG weights; its step is tested in
    tests/training/test_tae_losses.py), the discriminator starting mid-run."""
    workdir = tmp_path / "tae"
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", "train",
                           "--config=experiments/tae_tiny.py:smoke", f"--workdir={workdir}",
                           "--config.tae.disc_weight=0.5", "--config.tae.disc_start=2",
                           "--config.tae.disc_layers=2", "--config.tae.disc_ndf=8",
                           "--config.tae.opl_weight=10.0", "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((workdir / "eval.json").read_text())
    assert report["job"] == "tae" and report["tae_step"] == 4
    for kind in ("video", "image"):
        assert 0 < report[kind]["psnr_db"] < 100 and -1 <= report[kind]["ssim"] <= 1
    long = report["long_clip"]
    # 40 frames > one 32-frame encode tile: the tiled path runs and blends tiles, which changes
    # the output a little (> 0), far less than the reconstruction error itself.
    assert long["frames"] == 40
    assert 0 < long["tiled_vs_untiled_rms"] < 0.05 * long["reconstruction_rms"]
    # PSNR (peak 255) and the RMS error in uint8 levels are the same measurement.
    assert long["untiled_psnr_db"] == pytest.approx(
        20 * math.log10(255 / long["reconstruction_rms"]), rel=1e-9)
    metrics = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [m["image_step"] for m in metrics] == [0.0, 0.0]  # steps 2 and 4 of 1:3 (0 was an image)
    assert [m["disc_factor"] for m in metrics] == [0.0, 1.0]
    # The OPL's scheduled weight: off for updates 1-2, on from update 3 (tae.opl_start=2).
    assert [m["opl_weight"] for m in metrics] == [0.0, 10.0]
    # The discriminator's hinge loss counts from disc_start on, not before.
    assert metrics[0]["d_loss"] == 0.0 < metrics[1]["d_loss"]
    # The logged loss is the weighted sum of the logged terms with this run's weights: kl 1e-6,
    # mse 1 (the nll), opl 10 once scheduled, and disc_weight 0.5 x the adaptive d_weight once D has started.
    for m in metrics:
        expected = (m["nll"] + 1e-6 * m["kl"] + m["opl_weight"] * m["opl"]
                    + 0.5 * m["disc_factor"] * m["d_weight"] * m["g_loss"])
        assert m["loss"] == pytest.approx(expected, rel=1e-5), m
    # `mgen eval` re-scores the same checkpoint identically.
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", "eval", f"--workdir={workdir}",
                           f"--out={tmp_path / 'again.json'}"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["video"] == report["video"] and again["image"] == report["image"]
