"""Pure DiT train step: flow matching on normalised TAE latents with text dropout for CFG."""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.flow.loss import flow_matching_loss
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.latent_scaling import normalize_latents
from mgen_jax.training.train_state import TrainState


def drop_text(key, ids, mask, empty_ids, empty_mask, rate: float):
    """Replace each example's prompt by the empty prompt with probability `rate`."""
    drop = jax.random.bernoulli(key, rate, (ids.shape[0],))[:, None]
    return jnp.where(drop, empty_ids[None], ids), jnp.where(drop, empty_mask[None], mask)


def make_dit_train_step(dit: PureModel, text_encoder: PureModel,
                        optimizer: optax.GradientTransformation, *, flow_cfg, latent_shift: float,
                        latent_scale: float, empty_ids, empty_mask):
    empty_ids, empty_mask = jnp.asarray(empty_ids), jnp.asarray(empty_mask)

    def train_step(state: TrainState, text_params: dict, batch: dict, key: jax.Array):
        k_drop, k_latent, k_flow = jax.random.split(key, 3)
        ids, mask = drop_text(k_drop, batch["ids"], batch["mask"], empty_ids, empty_mask,
                              flow_cfg.text_dropout)
        text = jax.lax.stop_gradient(text_encoder.bind(text_params)(ids, mask))  # frozen
        mean, logvar = batch["latent_mean"], batch["latent_logvar"]
        z = mean
        if flow_cfg.latent_sample == "posterior":
            z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(k_latent, mean.shape)
        x1 = normalize_latents(z, latent_shift, latent_scale)

        def loss_fn(params):
            model = dit.bind(params)
            return flow_matching_loss(lambda x, t: model(x, t, text, mask), x1, k_flow,
                                      sigma_min=flow_cfg.sigma_min, t_mean=flow_cfg.t_logit_mean,
                                      t_std=flow_cfg.t_logit_std)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads, optimizer)
        return state, {"loss": loss, "grad_norm": optax.global_norm(grads)}

    return train_step
