"""The TAE's GAN train step: the autoencoder and its patch-GAN discriminator (models/tae/
gan_pair.py), one TrainState, each network updated from its own loss.

Losses (taming-transformers' LPIPSWithDiscriminator, hinge variant):
  generator     = nll + kl + opl + disc_factor * d_weight * disc_weight * g_loss
  discriminator = disc_factor * hinge(D(real), D(stop_gradient(recon)))
with nll the reconstruction terms (+ LPIPS), g_loss = -mean D(recon), and d_weight taming's
adaptive weight from the gradients of nll and g_loss w.r.t. the decoder's last conv kernel.
The autoencoder's gradient comes from the generator loss only, the discriminator's from the
discriminator loss only."""

import jax
import jax.numpy as jnp
import optax

from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.gan_pair import last_decoder_layer
from mgen_jax.models.tae.video_range import video_to_float
from mgen_jax.training.tae_losses import (adaptive_weight, disc_factor, generator_adversarial_loss,
                                          hinge_d_loss)
from mgen_jax.training.tae_step import (TaeLossWeights, check_lpips, latent_regularizers,
                                        reconstruction_loss)
from mgen_jax.training.train_state import TrainState


def _get(tree: dict, path):
    for k in path:
        tree = tree[k]
    return tree


def make_tae_gan_grad_fn(pair: PureModel, weights: TaeLossWeights, *, disc_weight: float,
                         disc_start: int, lpips: PureModel | None = None):
    """grad_fn(params, lpips_params, video [-1, 1], key, step) -> (grads, metrics), grads laid
    out as params. Separate from the update so tests can check the gradients themselves."""
    check_lpips(weights, lpips)

    def bind(ae_params, d_params):
        return pair.bind({"autoencoder": ae_params, "discriminator": d_params})

    def grad_fn(params, lpips_params, video, key, step):
        ae_params, d_params = params["autoencoder"], params["discriminator"]
        # One forward and one backward through the autoencoder: every generator term is a
        # function of (recon, mean, logvar), so its parameter gradient is the VJP of the forward
        # at that term's output cotangent; the VJP is linear, so the weighted sum of terms is one
        # VJP call. The two last-layer gradients for the adaptive weight are VJP calls too, whose
        # unused outputs (everything but that kernel) XLA removes as dead code.
        (recon, mean, logvar), ae_vjp = jax.vjp(
            lambda p: bind(p, d_params).autoencoder(video, key), ae_params)
        (nll, rec_metrics), g_nll = jax.value_and_grad(
            lambda r: reconstruction_loss(r, video, weights, lpips, lpips_params),
            has_aux=True)(recon)
        g_loss, g_adv = jax.value_and_grad(
            lambda r: generator_adversarial_loss(bind(ae_params, d_params).discriminator(r)))(recon)
        (reg, reg_metrics), (g_mean, g_logvar) = jax.value_and_grad(
            lambda m, lv: latent_regularizers(m, lv, weights, step), argnums=(0, 1),
            has_aux=True)(mean, logvar)

        last = last_decoder_layer(ae_params)
        zeros = (jnp.zeros_like(mean), jnp.zeros_like(logvar))
        last_grad = lambda g_recon: _get(ae_vjp((g_recon, *zeros))[0], last)
        d_weight = adaptive_weight(optax.tree.norm(last_grad(g_nll)),
                                   optax.tree.norm(last_grad(g_adv)))
        factor = disc_factor(step, disc_start)
        adv_scale = factor * d_weight * disc_weight
        (ae_grads,) = ae_vjp((g_nll + adv_scale * g_adv, g_mean, g_logvar))
        gen_loss = nll + reg + adv_scale * g_loss

        def d_loss_fn(d_p):
            disc = bind(ae_params, d_p).discriminator
            real, fake = disc(video), disc(jax.lax.stop_gradient(recon))
            return factor * hinge_d_loss(real, fake), (jnp.mean(real), jnp.mean(fake))

        (d_loss, (logits_real, logits_fake)), d_grads = jax.value_and_grad(
            d_loss_fn, has_aux=True)(d_params)
        metrics = {"loss": gen_loss, "nll": nll, "g_loss": g_loss, "d_loss": d_loss,
                   "d_weight": d_weight, "disc_factor": factor, "logits_real": logits_real,
                   "logits_fake": logits_fake, **rec_metrics, **reg_metrics}
        return {"autoencoder": ae_grads, "discriminator": d_grads}, metrics

    return grad_fn


def make_tae_gan_train_step(pair: PureModel, optimizer: optax.GradientTransformation, *,
                            kl_weight: float, mse_weight: float = 0.0, l1_weight: float = 1.0,
                            opl_weight: float = 0.0, opl_r: float = 3.0,
                            perceptual_weight: float = 0.0, lpips: PureModel | None = None,
                            disc_weight: float, disc_start: int = 0, opl_start: int = 0):
    """step(state, batch, key), or step(state, lpips_params, batch, key) with perceptual_weight
    > 0; state.params is the pair's {'autoencoder', 'discriminator'}. Before disc_start the
    discriminator's gradient is exactly 0 (with Adam and no weight decay it does not move).

    One optimizer over both networks, as asked of a single TrainState; global-norm clipping then
    sees both gradients together. To clip or schedule them apart (taming uses two optimizers),
    pass `split_optimizer(ae_opt, disc_opt)`."""
    weights = TaeLossWeights(kl_weight, mse_weight, l1_weight, opl_weight, opl_r, perceptual_weight,
                             opl_start)
    grad_fn = make_tae_gan_grad_fn(pair, weights, disc_weight=disc_weight, disc_start=disc_start,
                                   lpips=lpips)

    def step(state: TrainState, lpips_params, batch: dict, key: jax.Array):
        video = video_to_float(batch["video"])
        grads, metrics = grad_fn(state.params, lpips_params, video, key, state.step)
        state = state.apply_gradients(grads, optimizer)
        return state, {"grad_norm": optax.tree.norm(grads["autoencoder"]),
                       "d_grad_norm": optax.tree.norm(grads["discriminator"]), **metrics}

    if perceptual_weight > 0:
        return step
    return lambda state, batch, key: step(state, None, batch, key)


def split_optimizer(autoencoder: optax.GradientTransformation,
                    discriminator: optax.GradientTransformation) -> optax.GradientTransformation:
    """One GradientTransformation applying each network's own optimizer to its half of the
    pair's params (separate clipping, learning rates and moments, as taming's two optimizers)."""
    return optax.multi_transform({"autoencoder": autoencoder, "discriminator": discriminator},
                                 lambda params: {k: k for k in params})
