"""Training-loop sub-config of one phase (`tae_train`, `dit_train`): how long, how big a batch,
how often to log and checkpoint. The phase's optimizer is its own group (configs/optimizer.py)."""
import ml_collections


def train_config(steps: int = 1000, batch_size: int = 8) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        steps=steps, batch_size=batch_size, log_every=25, checkpoint_every=200,
        keep_checkpoints=2))
