"""Pure train step of Movie Gen Audio's DiT (spec 6.4): masked audio prediction by flow matching
on normalised DAC-VAE latents, conditioned on per-frame visual features and cached text.

For each example of the batch the step draws
  * a context mask (flow/audio_masks.py sample_context_masks, cfg.audio_dit.masking): the task
    (generation / extension / infilling) and which latent frames are known; known frames reach
    the model as clean context and are left out of the loss (masked_audio_flow_loss);
  * classifier-free-guidance text dropout as the video DiT's step does (models/text/conditioner.py
    drop_text: every encoder at once with flow.text_dropout, one encoder alone with its
    text.encoders.<name>.dropout), each dropped prompt replaced by its encoder's cached null;
  * video dropout: the visual features replaced by zeros with probability `video_dropout`,
    independently of the text, so sampling can guide on the video as well as the text (the
    zero features are what `audio_velocity_fn` is given for "no video" too);
  * flow t (logit-normal, flow.t_logit_mean / t_logit_std) and noise, inside the loss.
Every draw is made for the whole batch with the step's key, so with the optimizer's
accumulation_steps k > 1 the k micro-batches (training/accumulation.py) compute the whole
batch's update, as the video DiT's steps do; the update itself is theirs
(dit_step.accumulated_update: the accumulated gradient, then apply_update with the guard).
"""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.flow.audio_masks import (masked_audio_flow_loss, sample_context_masks,
                                       task_probabilities)
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.conditioner import drop_text
from mgen_jax.models.text.text_inputs import split_fields
from mgen_jax.training.dit_step import accumulated_update, micro_rows
from mgen_jax.training.train_state import TrainState


def audio_velocity_fn(model, text: dict, text_mask: dict, video: jax.Array | None):
    """velocity(x_t [B, T, C], t [B], context=None, context_mask=None) -> v [B, T, C] of a bound
    audio DiT (models/audio/audio_dit.py) under fixed conditions: text {name: [B, L, D]},
    text_mask {name: [B, L]}, video [B, T_v, D_v] per-frame features (zeros: the step's dropped
    video) or None (the model's audio-only path, which the step never trains). context
    [B, T, C] clean latents and context_mask [B, T, 1] (1 = known) for extension and infilling;
    None generates from nothing. The train step and samplers share it."""
    def velocity(x_t, t, context=None, context_mask=None):
        return model(x_t, t, text, text_mask, video=video, context=context,
                     context_mask=context_mask)
    return velocity


def drop_video(key: jax.Array, video: jax.Array, rate: float) -> jax.Array:
    """Each example's features [B, T_v, D_v] replaced by zeros with probability `rate`."""
    drop = jax.random.bernoulli(key, rate, (video.shape[0],))
    return jnp.where(drop[:, None, None], jnp.zeros_like(video), video)


def make_audio_dit_train_step(model: PureModel, optimizer: optax.GradientTransformation, *,
                              flow_cfg, masking_cfg, null_text: dict, null_mask: dict,
                              video_dropout: float, encoder_dropout: dict | None = None):
    """step(state, batch, key) -> (state, metrics).

    batch: "latents" float32 [B, T, C] normalised DAC-VAE latents ((z - shift) * scale);
    "video" [B, T_v, D_v] per-frame visual features of the same clip (resampled to T by the
    model); "text.<name>" [B, L, D] / "text_mask.<name>" [B, L] cached encoder outputs, as the
    video DiT's make_dit_train_step_on_embeddings takes them; optional "valid" bool [B, T]
    (False on padding frames of clips shorter than T: neither context nor loss).
    null_text {name: [L, D]} / null_mask {name: [L]}: each encoder's empty-prompt embedding.
    flow_cfg: sigma_min, t_logit_mean, t_logit_std, text_dropout (configs/flow.py);
    masking_cfg: cfg.audio_dit.masking; encoder_dropout {name: rate} (dit_step's
    encoder_dropout_rates(cfg.text)).
    metrics: loss (mean over examples of each one's target-frame MSE), grad_norm and, for
    make_optimizer's optimizers, lr and the non-finite guard's entries (apply_update)."""
    if not 0.0 <= float(video_dropout) <= 1.0:
        raise ValueError(f"video_dropout={video_dropout!r} must be a probability in [0, 1]")
    task_probabilities(masking_cfg)  # a bad task mix fails here, before tracing

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        k_text, k_video, k_mask, k_flow = jax.random.split(key, 4)
        text, mask = drop_text(k_text, split_fields(batch, "text"),
                               split_fields(batch, "text_mask"), null_text, null_mask,
                               flow_cfg.text_dropout, encoder_dropout)
        video = drop_video(k_video, batch["video"], video_dropout)
        x1 = batch["latents"].astype(jnp.float32)
        context_mask, _ = sample_context_masks(k_mask, x1.shape[0], x1.shape[1], masking_cfg)
        valid = batch.get("valid")

        def loss_share(bound, micro):
            take = micro.take
            velocity = audio_velocity_fn(bound, micro_rows(micro, text),
                                         micro_rows(micro, mask),
                                         take(video))

            def velocity_of_batch(x_t, t, context, known):
                # The batch's x_t, t and context: only the micro-batch's rows run the DiT.
                return micro.put(x_t, velocity(take(x_t), take(t), take(context), take(known)))

            loss, aux = masked_audio_flow_loss(
                velocity_of_batch, x1, context_mask, k_flow, sigma_min=flow_cfg.sigma_min,
                t_mean=flow_cfg.t_logit_mean, t_std=flow_cfg.t_logit_std, valid=valid)
            # The loss is the mean over examples with any target frame.
            present = aux["target_frames"] > 0
            row_terms = jnp.where(present, aux["per_example_loss"], 0.0)
            return micro.share(loss, row_terms, jnp.maximum(jnp.sum(present), 1)), None

        return accumulated_update(model, optimizer, state, loss_share)

    return train_step
