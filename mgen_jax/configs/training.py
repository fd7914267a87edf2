"""Training-loop sub-config of one phase (`tae_train`, `dit_train`): how long, how big a batch,
how often to log and checkpoint, how to stop on preemption. The phase's optimizer is its own
group (configs/optimizer.py)."""
import ml_collections


def train_config(steps: int = 1000, batch_size: int = 8) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        steps=steps, batch_size=batch_size, log_every=25, checkpoint_every=200,
        keep_checkpoints=2,
        # Orbax writes checkpoints in a background thread while the next steps run (False: the
        # step waits for the files; `mgen bench checkpoint` measures the difference).
        async_checkpoints=True,
        # Seconds from a SIGTERM (preemption / maintenance notice) to the exit: the step in
        # progress finishes, its checkpoint is written, the process exits 0; a save still
        # running past this exits 1 (TPU VMs give about 30 s before they stop the machine).
        preemption_grace_s=30.0))
