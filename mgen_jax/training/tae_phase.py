"""The TAE phase: train the temporal autoencoder on joint image/video batches, with the loss
terms, GAN and LPIPS that cfg.tae switches on. Used by the text-to-video job and the tae job."""
import jax
import numpy as np

from mgen_jax.checkpointing.lpips_convert import load_lpips, lpips_model, parse_lpips_checkpoint
from mgen_jax.models.builders import build_tae_trainable
from mgen_jax.parallel.sharding import replicated
from mgen_jax.training.joint_image_video import joint_image_video_steps
from mgen_jax.training.phase_runner import JobContext, train_phase
from mgen_jax.training.tae_gan_step import make_tae_gan_train_step
from mgen_jax.training.tae_step import make_tae_train_step


def train_tae(ctx: JobContext):
    """Returns the TrainState (params of the autoencoder, or of the autoencoder + discriminator
    pair when the GAN is on: see models/builders.autoencoder_params)."""
    cfg = ctx.cfg
    t = cfg.tae
    model = build_tae_trainable(cfg)
    it = ctx.iterator(ctx.data_dir, cfg.tae_train.batch_size, cfg.data.seed + 1)
    example = {"video": np.zeros((cfg.tae_train.batch_size, cfg.data.frames, cfg.data.height,
                                  cfg.data.width, 3), np.uint8)}
    lpips, frozen, frozen_sh = None, None, None
    if t.perceptual_weight > 0:  # the frozen loss network travels like the DiT's text encoder
        lpips = lpips_model()
        frozen_sh = jax.tree.map(lambda _: replicated(ctx.mesh), lpips.abstract_params())
        frozen = jax.device_put(load_lpips(*parse_lpips_checkpoint(t.lpips_checkpoint)),
                                frozen_sh)
    terms = dict(kl_weight=t.kl_weight, mse_weight=t.mse_weight, l1_weight=t.l1_weight,
                 opl_weight=t.opl_weight, opl_r=t.opl_r, perceptual_weight=t.perceptual_weight,
                 lpips=lpips, opl_start=t.opl_start)

    def make_step(optimizer):
        if t.disc_weight > 0:
            return make_tae_gan_train_step(model, optimizer, disc_weight=t.disc_weight,
                                           disc_start=t.disc_start, **terms)
        return make_tae_train_step(model, optimizer, **terms)

    # A built dataset mixes real image batches in (data.mixture); Shapes makes them from frames.
    image_batches = 0 if cfg.data.source == "records" else t.image_batches
    state, _ = train_phase(
        ctx, phase="tae", model=model, train_cfg=cfg.tae_train, optimizer_cfg=cfg.tae_optimizer,
        iterator=it, example_batch=example, frozen=frozen, frozen_shardings=frozen_sh,
        make_step=make_step,
        compile_steps=lambda step, jit: joint_image_video_steps(
            step, jit, image_batches=image_batches, video_batches=t.video_batches,
            images_per_clip=t.images_per_clip),
        meta={"params": model.num_params()})
    return state
