"""`mgen eval` for the video_to_audio job: audio generated for held-out audio-visual Shapes clips
(colour/shape/direction combinations never trained on), scored by evaluation/av_sync.py against
the clips' ground truth: pitch accuracy (the tone's pitch names the shape's colour) and the median
offset from each bounce to its nearest detected click, each beside chance. Also the DAC-VAE's
reconstruction of the same clips' soundtracks (SNR, multi-scale mel distance, and the same two
scores, the ceiling of the audio model), and multi-diffusion on clips long_audio_factor x longer
than the training clips: the level discontinuity at window joins against within windows,
triangular against uniform weights (evaluation/audio_joins.py). A few clips are written as .wav
and as mp4 with a 48 kHz AAC track into <workdir>/eval/."""
import os

import numpy as np

from data_pipelines.shapes import held_out_combos
from data_pipelines.shapes_av import canonical_av_caption, held_out_av_clips, render_av_clip
from mgen_jax.configs.dac_vae import hop_length
from mgen_jax.evaluation.audio_joins import join_discontinuity, window_boundaries_s
from mgen_jax.evaluation.av_sync import evaluate_soundtracks
from mgen_jax.evaluation.dac_vae_report import dac_vae_reconstruction_report
from mgen_jax.evaluation.json_report import write_json_report
from mgen_jax.inference.audio_io import (MP4_SAMPLE_RATE, to_sample_rate, write_mp4_with_audio,
                                         write_wav)
from mgen_jax.inference.loading import load_video_to_audio
from mgen_jax.workdir import eval_dir, eval_report_path

_SUMMARY = ("pitch_accuracy", "pitch_chance", "median_onset_offset_ms", "onset_chance_ms",
            "onsets_per_bounce", "missed_bounces", "median_click_offset_ms", "count", "bounces")


def _summary(scores: dict) -> dict:
    return {k: scores[k] for k in _SUMMARY}


def write_media(out_dir: str, videos, waveforms, captions, *, fps: float, sample_rate: int,
                count: int) -> list:
    """The first `count` clips as NNN.wav (the model's rate) and NNN.mp4 (H.264 + 48 kHz AAC)."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i, (video, audio, caption) in enumerate(list(zip(videos, waveforms, captions))[:count]):
        wav, mp4 = (os.path.join(out_dir, f"{i:03d}.{ext}") for ext in ("wav", "mp4"))
        write_wav(wav, audio, sample_rate)
        write_mp4_with_audio(mp4, video, fps, to_sample_rate(audio, sample_rate, MP4_SAMPLE_RATE),
                             MP4_SAMPLE_RATE, scale=4)
        written.append({"caption": caption, "wav": os.path.basename(wav),
                        "mp4": os.path.basename(mp4)})
    return written


def evaluate_audio_workdir(workdir: str, out: str | None = None) -> dict:
    pipeline = load_video_to_audio(workdir)
    cfg = pipeline.cfg
    ev, data, rate = cfg.eval, cfg.data, cfg.dac_vae.sample_rate
    size = dict(height=data.height, width=data.width, fps=data.fps, sample_rate=rate)
    held = held_out_av_clips(ev.samples_per_prompt, frames=data.frames, seed=ev.seed, **size)
    videos = np.stack([clip.video for _, clip in held])
    captions = [canonical_av_caption(*combo) for combo, _ in held]
    colours = [combo[0] for combo, _ in held]
    bounces = [clip.bounce_times for _, clip in held]
    sampling = dict(seed=ev.seed, steps=ev.sample_steps, guidance_scale=ev.guidance_scale,
                    batch_size=ev.batch_size)
    generated = pipeline.generate(videos, captions, **sampling)
    scores = evaluate_soundtracks(generated, rate, colours, bounces)
    truth = [clip.audio for _, clip in held]
    report = {
        "job": "video_to_audio", "held_out_clips": len(held),
        "generated": _summary(scores),
        "ground_truth": _summary(evaluate_soundtracks(truth, rate, colours, bounces)),
        "dac_vae": dac_vae_reconstruction_report(cfg, pipeline.params["dac"], truth,
                                                 colours=colours, bounce_times=bounces),
        "sampling": {"sampler": cfg.flow.sampler, "steps": ev.sample_steps,
                     "guidance_scale": ev.guidance_scale},
        "clips": scores["clips"],
    }
    report["multi_diffusion"] = _long_audio(pipeline, ev, data, size, sampling)
    report["media"] = write_media(eval_dir(workdir), videos, generated, captions, fps=data.fps,
                                  sample_rate=rate, count=ev.media_samples)
    out = write_json_report(report, out or eval_report_path(workdir))
    g = report["generated"]
    print(f"held-out audio: pitch accuracy {g['pitch_accuracy']:.3f} (chance "
          f"{g['pitch_chance']:.3f}), median onset offset {g['median_onset_offset_ms']:.1f} ms "
          f"(chance {g['onset_chance_ms']:.1f} ms), {g['onsets_per_bounce']:.2f} onsets per "
          f"bounce -> {out}")
    return report


def _long_audio(pipeline, ev, data, size: dict, sampling: dict) -> dict:
    """Held-out combinations on clips long_audio_factor x longer, by multi-diffusion with
    triangular and with uniform windows (same noise): scores and join discontinuity of each."""
    if not ev.long_audio_factor or ev.long_audio_clips <= 0:
        return {}
    frames = data.frames * ev.long_audio_factor
    rng = np.random.default_rng([ev.seed, 1])
    combos = held_out_combos()
    picks = [combos[i % len(combos)] for i in range(ev.long_audio_clips)]
    clips = [render_av_clip(*combo, frames=frames, rng=rng, **size) for combo in picks]
    videos = np.stack([c.video for c in clips])
    captions = [canonical_av_caption(*combo) for combo in picks]
    hop_s = hop_length(pipeline.cfg.dac_vae) / size["sample_rate"]
    window = int(np.ceil(data.frames / data.fps / hop_s))
    latent_frames = int(np.ceil(frames / data.fps / hop_s))
    stride = max(window // 2, 1)
    joins = window_boundaries_s(latent_frames, window, stride, hop_s)
    result = {"frames": frames, "seconds": frames / data.fps, "window_frames": window,
              "stride_frames": stride, "joins_s": [float(j) for j in joins]}
    for weighting in ("triangular", "uniform"):
        audio = pipeline.generate(videos, captions, window=window, stride=stride,
                                  weighting=weighting, **sampling)
        scores = evaluate_soundtracks(audio, size["sample_rate"], [p[0] for p in picks],
                                      [c.bounce_times for c in clips])
        result[weighting] = {**_summary(scores), **join_discontinuity(
            audio, size["sample_rate"], joins, [c.bounce_times for c in clips])}
    return result
