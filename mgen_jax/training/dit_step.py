"""Pure DiT train steps: flow matching on normalised TAE latents with text dropout for CFG.

Two entry points share one update:
  * `make_dit_train_step`: prompts arrive as token ids and the frozen text encoder runs inside the
    step (the quickstart);
  * `make_dit_train_step_on_embeddings`: prompts arrive as cached encoder outputs (pod-scale
    training, `mgen plan`), dropped to a null embedding for classifier-free guidance;
  * `make_packed_dit_train_step`: the same on NaViT-packed rows of clips of mixed shapes.
"""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.flow.loss import flow_matching_loss, packed_flow_matching_loss
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.latent_scaling import normalize_latents
from mgen_jax.training.train_state import TrainState


def drop_text(key, text, mask, null_text, null_mask, rate: float):
    """Replace each example's prompt (ids [B, L] or embeddings [B, L, D], with mask [B, L]) by the
    null prompt with probability `rate`."""
    drop = jax.random.bernoulli(key, rate, (text.shape[0],))
    pick = lambda a, null: jnp.where(drop.reshape((-1,) + (1,) * (a.ndim - 1)), null[None], a)
    return pick(text, null_text), pick(mask, null_mask)


def _target_latents(batch: dict, key, flow_cfg, latent_shift: float, latent_scale: float):
    mean, logvar = batch["latent_mean"], batch["latent_logvar"]
    z = mean
    if flow_cfg.latent_sample == "posterior":
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    return normalize_latents(z, latent_shift, latent_scale)


def _update(dit: PureModel, optimizer, state: TrainState, loss_of_model):
    """One optimizer step on loss_of_model(bound DiT) -> (loss, aux)."""
    (loss, _), grads = jax.value_and_grad(lambda p: loss_of_model(dit.bind(p)),
                                          has_aux=True)(state.params)
    state = state.apply_gradients(grads, optimizer)
    return state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def _flow_update(dit: PureModel, optimizer, flow_cfg, state: TrainState, x1, text, mask, key):
    return _update(dit, optimizer, state, lambda model: flow_matching_loss(
        lambda x, t: model(x, t, text, mask), x1, key, sigma_min=flow_cfg.sigma_min,
        t_mean=flow_cfg.t_logit_mean, t_std=flow_cfg.t_logit_std))


def make_dit_train_step(dit: PureModel, text_encoder: PureModel,
                        optimizer: optax.GradientTransformation, *, flow_cfg, latent_shift: float,
                        latent_scale: float, empty_ids, empty_mask):
    """step(state, text_params, batch{ids, mask, latent_mean, latent_logvar}, key)."""
    empty_ids, empty_mask = jnp.asarray(empty_ids), jnp.asarray(empty_mask)

    def train_step(state: TrainState, text_params: dict, batch: dict, key: jax.Array):
        k_drop, k_latent, k_flow = jax.random.split(key, 3)
        ids, mask = drop_text(k_drop, batch["ids"], batch["mask"], empty_ids, empty_mask,
                              flow_cfg.text_dropout)
        text = jax.lax.stop_gradient(text_encoder.bind(text_params)(ids, mask))  # frozen
        x1 = _target_latents(batch, k_latent, flow_cfg, latent_shift, latent_scale)
        return _flow_update(dit, optimizer, flow_cfg, state, x1, text, mask, k_flow)

    return train_step


def make_dit_train_step_on_embeddings(dit: PureModel, optimizer: optax.GradientTransformation, *,
                                      flow_cfg, latent_shift: float, latent_scale: float,
                                      null_text, null_mask):
    """step(state, batch{text [B, L, D], text_mask [B, L], latent_mean, latent_logvar}, key);
    null_text [L, D] / null_mask [L] are the empty prompt's cached embedding."""

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        k_drop, k_latent, k_flow = jax.random.split(key, 3)
        text, mask = drop_text(k_drop, batch["text"], batch["text_mask"], jnp.asarray(null_text),
                               jnp.asarray(null_mask), flow_cfg.text_dropout)
        x1 = _target_latents(batch, k_latent, flow_cfg, latent_shift, latent_scale)
        return _flow_update(dit, optimizer, flow_cfg, state, x1, text, mask, k_flow)

    return train_step


def make_packed_dit_train_step(dit: PureModel, optimizer: optax.GradientTransformation, *,
                               flow_cfg, latent_shift: float, latent_scale: float,
                               null_text, null_mask):
    """step(state, batch, key) on packed rows (data_pipelines/packing.py): batch has tokens
    [B, N, P] (patchified latent means), coords [B, N, 3], segments [B, N], text [B, S, L, D] and
    text_mask [B, S, L]; each clip gets its own t and its own text dropout."""

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        k_drop, k_flow = jax.random.split(key)
        text, mask = batch["text"], batch["text_mask"]
        b, s = mask.shape[:2]
        text, mask = drop_text(k_drop, text.reshape(b * s, *text.shape[2:]),
                               mask.reshape(b * s, -1), jnp.asarray(null_text),
                               jnp.asarray(null_mask), flow_cfg.text_dropout)
        text, mask = text.reshape(b, s, *text.shape[1:]), mask.reshape(b, s, -1)
        x1 = normalize_latents(batch["tokens"], latent_shift, latent_scale)

        def loss_of_model(model):
            velocity = lambda x, t: model.forward_packed(x, batch["coords"], batch["segments"], t,
                                                         text, mask)
            return packed_flow_matching_loss(velocity, x1, batch["segments"], s, k_flow,
                                             sigma_min=flow_cfg.sigma_min,
                                             t_mean=flow_cfg.t_logit_mean,
                                             t_std=flow_cfg.t_logit_std)

        return _update(dit, optimizer, state, loss_of_model)

    return train_step
