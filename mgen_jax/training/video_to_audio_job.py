"""The video_to_audio job behind `mgen train` (Movie Gen Audio, tiny): data -> DAC-VAE ->
audio latents (with per-frame visual features and cached text) -> audio DiT.

Like text_to_video, every phase checkpoints under <workdir>/checkpoints/<phase> and is skipped
when done, so re-running the command resumes; each phase's wall time goes to timings.json.
Evaluation is `mgen eval` (evaluation/av_report.py), which JOBS names."""
import jax
import ml_collections

from mgen_jax.checkpointing.vision_checkpoint import vision_tower_params
from mgen_jax.models.builders import build_clip_vision
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.audio_dit_phase import train_audio_dit
from mgen_jax.training.dac_vae_phase import train_dac_vae
from mgen_jax.training.phase_runner import prepare_workdir
from mgen_jax.training.precompute_phase import encode_audio_latents
from mgen_jax.workdir import phase_timer

AUDIO_SOURCES = ("shapes_av",)  # data sources whose records carry a soundtrack


def check_audio_config(cfg) -> None:
    """What the job cannot run fails before any data is written, naming the key."""
    if cfg.data.source not in AUDIO_SOURCES:
        raise ValueError(f"job video_to_audio needs data with sound: data.source="
                         f"{cfg.data.source!r} is not one of {AUDIO_SOURCES}")
    if cfg.data.audio_sample_rate != cfg.dac_vae.sample_rate:
        raise ValueError(f"data.audio_sample_rate={cfg.data.audio_sample_rate} differs from "
                         f"dac_vae.sample_rate={cfg.dac_vae.sample_rate}")


def run_video_to_audio(cfg: ml_collections.ConfigDict, workdir: str, *,
                       show_progress: bool = True) -> None:
    check_audio_config(cfg)
    with phase_timer(workdir, "data"):
        ctx = prepare_workdir(cfg, workdir, show_progress)
    with phase_timer(workdir, "dac_vae"):
        dac_state = train_dac_vae(ctx)
    with phase_timer(workdir, "audio_latents"):  # and the text cache
        tower = build_clip_vision(cfg)
        shardings = jax.tree.map(lambda _: replicated(ctx.mesh), tower.abstract_params())
        latents = encode_audio_latents(ctx, dac_state.params, int(jax.device_get(dac_state.step)),
                                       vision_tower_params(cfg.vision, tower, shardings))
    with phase_timer(workdir, "audio_dit"):
        train_audio_dit(ctx, latents)
