"""Pure TAE train step: weighted L1 + MSE reconstruction + KL, on a posterior sample.

On sparse content (a small shape on black) L1 alone pulls every pixel towards the background
median and a tiny model stalls there; MSE does not, so the tiny configs weight it in."""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import kl_divergence
from mgen_jax.models.tae.video_range import psnr, video_to_float
from mgen_jax.training.train_state import TrainState


def make_tae_train_step(tae: PureModel, optimizer: optax.GradientTransformation, kl_weight: float,
                        mse_weight: float = 0.0, l1_weight: float = 1.0):
    def train_step(state: TrainState, batch: dict, key: jax.Array):
        video = video_to_float(batch["video"])

        def loss_fn(params):
            recon, mean, logvar = tae.bind(params)(video, key)
            l1 = jnp.mean(jnp.abs(recon - video))
            mse = jnp.mean(jnp.square(recon - video))
            kl = kl_divergence(mean, logvar)
            loss = l1_weight * l1 + mse_weight * mse + kl_weight * kl
            return loss, {"l1": l1, "mse": mse, "kl": kl, "psnr": psnr(recon, video)}

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads, optimizer)
        return state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    return train_step
