"""The audio-visual quickstart through the `mgen` command at smoke size: train (DAC-VAE, audio
latents with visual features, audio DiT), evaluate held-out clips into eval.json with playable
mp4s that carry a 48 kHz AAC track; `mgen sample --video-to-audio=IN.mp4` and `mgen sample
--audio=AV_WORKDIR` (sound for sampled text-to-video videos)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mgen_jax.inference.audio_io import MP4_SAMPLE_RATE, read_audio, read_wav
from mgen_jax.inference.video_io import read_mp4
from tests.compile_flags import FAST_COMPILE

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # whole jobs in subprocesses: minutes on 2 cores


def _mgen(*args):
    env = dict(os.environ, XLA_FLAGS=FAST_COMPILE, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "mgen_jax.cli", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def av_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("quickstart_av") / "wd"
    _mgen("train", "--config=experiments/quickstart_av.py:smoke", f"--workdir={workdir}",
          "--no-progress")
    return workdir


def _assert_plays_with_sound(mp4: Path, frames: int, fps: float):
    assert len(read_mp4(mp4)) == frames
    audio, rate = read_audio(mp4)
    assert rate == MP4_SAMPLE_RATE and audio.shape[0] == 1
    # AAC may run up to one frame of 1024 samples past the video's end (audio_io's docstring).
    assert 0 <= audio.shape[1] - frames / fps * rate <= 1024


def test_train_and_eval_write_scores_and_media(av_workdir):
    report = json.loads((av_workdir / "eval.json").read_text())
    timings = json.loads((av_workdir / "timings.json").read_text())
    assert set(timings) >= {"data", "dac_vae", "audio_latents", "audio_dit", "eval"}
    gen, truth = report["generated"], report["ground_truth"]
    assert 0.0 <= gen["pitch_accuracy"] <= 1.0 and gen["count"] == report["held_out_clips"] == 12
    assert truth["pitch_accuracy"] == 1.0 and truth["median_onset_offset_ms"] < 10.0
    assert gen["onset_chance_ms"] > 100.0 and gen["pitch_chance"] >= 1 / 6
    assert report["dac_vae"]["clips"] == 12 and "snr_db" in report["dac_vae"]
    long = report["multi_diffusion"]
    assert long["frames"] == 3 * 16 and long["joins_s"]
    for weighting in ("triangular", "uniform"):
        assert long[weighting]["count"] == 2 and long[weighting]["join_steps"] > 0
    assert [m["mp4"] for m in report["media"]] == ["000.mp4", "001.mp4"]
    for media in report["media"]:
        _assert_plays_with_sound(av_workdir / "eval" / media["mp4"], 16, 8)
        wave, rate = read_wav(av_workdir / "eval" / media["wav"])
        assert rate == 8000 and wave.shape == (1, 16000)  # 2 s at the DAC-VAE's 8 kHz


def test_sample_video_to_audio_of_a_longer_file(av_workdir, tmp_path):
    # A 24-frame input at 12 fps (2 s, another rate than training's 8): sound of its length.
    from mgen_jax.inference.video_io import write_mp4
    from data_pipelines.shapes_av import render_av_clip
    import numpy as np
    clip = render_av_clip("red", "circle", "left", frames=24, height=32, width=32, fps=12,
                          sample_rate=8000, rng=np.random.default_rng(0))
    source = tmp_path / "in.mp4"
    write_mp4(source, clip.video, fps=12, scale=2)
    out = tmp_path / "out"
    _mgen("sample", f"--workdir={av_workdir}", f"--video-to-audio={source}", f"--out={out}",
          "--steps=2", "--prompt=a red circle")
    written = json.loads((out / "samples.json").read_text())[str(source)]
    _assert_plays_with_sound(out / written["mp4"], 24, 12)
    assert read_wav(out / written["wav"])[0].shape == (1, 16000)


def test_sample_audio_adds_sound_to_sampled_videos(av_workdir, tmp_path):
    t2v = tmp_path / "t2v"
    _mgen("train", "--config=experiments/quickstart.py:smoke", f"--workdir={t2v}",
          "--no-progress", "--skip-eval")
    out = tmp_path / "out"
    _mgen("sample", f"--workdir={t2v}", f"--audio={av_workdir}", f"--out={out}", "--steps=2",
          "--prompt=a red circle moving left", "--prompt=a blue square moving up")
    mapping = json.loads((out / "samples.json").read_text())
    assert len(mapping) == 2
    for written in mapping.values():
        _assert_plays_with_sound(out / written["mp4"], 16, 8)
