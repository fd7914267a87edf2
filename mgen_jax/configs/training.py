"""Training-loop sub-config of one phase (`tae_train`, `dit_train`): how long, how big a batch,
how often to log, checkpoint, validate, sample and profile, how to stop on preemption. The phase's optimizer is its own
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
        preemption_grace_s=30.0,
        # Held-out validation (DiT phase; training/validation.py): the last validation_clips
        # records of the dataset (of a built dataset: of its bucket of data.frames x height x
        # width) are never trained on; at step 0, every validate_every steps (0: off) and at the
        # end, the flow-matching loss on them at each fixed t of validation_t, with noise fixed
        # for every run and seed, is logged as phase "<phase>_val" (loss = the mean over t).
        # Movie Gen's development proxy.
        validate_every=0, validation_clips=0, validation_t=(0.1, 0.3, 0.5, 0.7, 0.9),
        # Sample videos every sample_every steps (DiT phase; 0: off): the first sample_count
        # evaluation prompts, sampled from the current (EMA when kept) parameters into
        # <workdir>/samples/<phase>/<step>/ and TensorBoard images.
        sample_every=0, sample_count=2,
        # jax.profiler trace of steps [first, last] (1-based step numbers; () = none) into
        # <workdir>/profile/<phase>/, for TensorBoard's profile plugin / Perfetto.
        profile_steps=(),
        # Peak FLOP/s of one device for the logged MFU; 0: the TPU generation's bf16 peak from
        # parallel/tpu_chips.py, and no MFU on devices it does not know (CPU, GPU).
        peak_flops_per_device=0.0,
        # Stage chaining (training/init_from.py, checkpointing/stage_init.py): a phase without
        # checkpoints of its own starts from another run's: a previous stage's workdir (its
        # checkpoints/<phase>), a phase's checkpoint folder (WORKDIR/checkpoints/dit) or one
        # step of it. Parameters only (its EMA when it kept one), with a fresh optimizer, unless
        # init_optimizer_state (moments and EMA carried over; the schedule starts over).
        init_from="",
        init_optimizer_state=False,
        # DiT only: how each position table grows from the source's (position_growth.py).
        # 1 extends (old rows kept, zero rows added: same resolution, more aspect ratios or
        # frames), 3 stretches x3 (old row r becomes row 3r: resolution x3). 0 derives it: t
        # extends; h, w stretch by the ratio of data.height/width to the source workdir's.
        init_position_stretch=ml_collections.ConfigDict(dict(t=0.0, h=0.0, w=0.0))))
