"""The `tae` job behind `mgen train` for experiments/tae_*.py: data -> TAE.

The same TAE phase as the text-to-video job (same checkpoints, joint image/video batches), run on
its own; the CLI then scores it on held-out clips (evaluation/tae_report.py)."""
import ml_collections

from mgen_jax.training.tae_phase import train_tae
from mgen_jax.training.phase_runner import prepare_workdir


def run_tae(cfg: ml_collections.ConfigDict, workdir: str, *, show_progress: bool = True) -> None:
    train_tae(prepare_workdir(cfg, workdir, show_progress))
