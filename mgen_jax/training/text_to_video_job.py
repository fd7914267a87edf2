"""The text-to-video job behind `mgen train`: data -> TAE -> latents -> DiT.

Every phase checkpoints under <workdir>/checkpoints/<phase> and is skipped when its final
checkpoint exists, so re-running the same command after a crash resumes where it stopped.
Evaluation is the CLI's next step (configs/registries.py:JOBS names it), not the job's. Each
phase's wall time goes to <workdir>/timings.json (the split a slow run is diagnosed from)."""
import jax
import ml_collections

from mgen_jax.models.builders import autoencoder_params
from mgen_jax.training.dit_phase import train_dit
from mgen_jax.training.phase_runner import prepare_workdir
from mgen_jax.training.precompute_phase import encode_latents
from mgen_jax.training.tae_phase import train_tae
from mgen_jax.workdir import phase_timer


def run_text_to_video(cfg: ml_collections.ConfigDict, workdir: str, *,
                      show_progress: bool = True) -> None:
    with phase_timer(workdir, "data"):
        ctx = prepare_workdir(cfg, workdir, show_progress)
    with phase_timer(workdir, "tae"):
        tae_state = train_tae(ctx)
    with phase_timer(workdir, "latents"):  # and the text cache, when text.precompute
        tae_params = autoencoder_params(cfg, tae_state.params)
        latents = encode_latents(ctx, tae_params, int(jax.device_get(tae_state.step)))
    with phase_timer(workdir, "dit"):
        train_dit(ctx, latents, tae_params=tae_params)
