"""Pure TAE train step: weighted L1 + MSE reconstruction + KL on a posterior sample, plus the
optional Movie Gen terms: the outlier penalty (OPL) and LPIPS. The GAN variant, which trains a
discriminator alongside, is models/tae/gan_pair.py; it shares the loss pieces below.

On sparse content (a small shape on black) L1 alone pulls every pixel towards the background
median and a tiny model stalls there; MSE does not, so the tiny configs weight it in.

With the optimizer's accumulation_steps k > 1 the batch runs as k micro-batches
(training/accumulation.py), each with its own posterior-sample key (fold_in(key, j): the TAE
samples inside the model, so the noise cannot be sliced from the whole batch's); every term is a
mean over the batch, so the mean of the micro-batches' losses is the batch's loss."""
import dataclasses

import jax
import jax.numpy as jnp
import optax

from mgen_jax.models.perceptual.lpips import lpips_video
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.autoencoder import kl_divergence
from mgen_jax.models.tae.video_range import psnr, video_to_float
from mgen_jax.training.accumulation import accumulated_value_and_grad
from mgen_jax.training.optimizer import accumulation_steps
from mgen_jax.training.tae_losses import outlier_penalty_loss
from mgen_jax.training.train_state import TrainState, apply_update


@dataclasses.dataclass(frozen=True)
class TaeLossWeights:
    """Static weights of the autoencoder's own terms. A zero weight leaves its term out of the
    loss altogether (not 0 * term), so the default config computes exactly the old loss."""
    kl_weight: float
    mse_weight: float = 0.0
    l1_weight: float = 1.0
    opl_weight: float = 0.0
    opl_r: float = 3.0
    perceptual_weight: float = 0.0
    # The OPL counts from this step on (Movie Gen adds it for the last ~10K iterations); before,
    # its weight is 0. 0: from the start.
    opl_start: int = 0

    @classmethod
    def from_config(cls, tae_cfg) -> "TaeLossWeights":
        return cls(kl_weight=tae_cfg.kl_weight, mse_weight=tae_cfg.mse_weight,
                   l1_weight=tae_cfg.l1_weight, opl_weight=tae_cfg.opl_weight,
                   opl_r=tae_cfg.opl_r, perceptual_weight=tae_cfg.perceptual_weight,
                   opl_start=tae_cfg.opl_start)

    def opl_weight_at(self, step):
        """The OPL weight of update `step` (0-based: the state's step before the update)."""
        if self.opl_start <= 0:
            return jnp.float32(self.opl_weight)
        return jnp.where(step >= self.opl_start, self.opl_weight, 0.0).astype(jnp.float32)


def check_lpips(weights: TaeLossWeights, lpips: PureModel | None) -> None:
    if weights.perceptual_weight > 0 and lpips is None:
        raise ValueError("perceptual_weight > 0 needs the LPIPS model (lpips=lpips_model()) and "
                         "its frozen params as the step's extra argument")


def reconstruction_loss(recon, video, weights: TaeLossWeights, lpips: PureModel | None,
                        lpips_params):
    """The "nll" of taming-transformers: pixel terms + LPIPS, what the GAN's adaptive weight
    balances against. Returns (loss, metrics)."""
    l1 = jnp.mean(jnp.abs(recon - video))
    mse = jnp.mean(jnp.square(recon - video))
    loss = weights.l1_weight * l1 + weights.mse_weight * mse
    metrics = {"l1": l1, "mse": mse, "psnr": psnr(recon, video)}
    if weights.perceptual_weight > 0:
        # Frozen loss network: no gradient reaches its params, only the reconstruction.
        model = lpips.bind(jax.lax.stop_gradient(lpips_params))
        perceptual = jnp.mean(lpips_video(model, recon, video))
        loss = loss + weights.perceptual_weight * perceptual
        metrics["perceptual"] = perceptual
    return loss, metrics


def latent_regularizers(mean, logvar, weights: TaeLossWeights, step=0):
    """KL to N(0, I) and the OPL (its weight scheduled by step: TaeLossWeights.opl_start). The
    OPL looks at the posterior mean: the latent the DiT is trained on ("spots" are in it),
    without the sampling noise of z. Returns (loss, metrics)."""
    kl = kl_divergence(mean, logvar)
    opl = outlier_penalty_loss(mean, weights.opl_r)  # also logged when off: it flags spots
    loss = weights.kl_weight * kl
    metrics = {"kl": kl, "opl": opl}
    if weights.opl_weight > 0:
        opl_weight = weights.opl_weight_at(step)
        loss = loss + opl_weight * opl
        metrics["opl_weight"] = opl_weight
    return loss, metrics


def make_tae_train_step(tae: PureModel, optimizer: optax.GradientTransformation, kl_weight: float,
                        mse_weight: float = 0.0, l1_weight: float = 1.0, *,
                        opl_weight: float = 0.0, opl_r: float = 3.0,
                        perceptual_weight: float = 0.0, lpips: PureModel | None = None,
                        opl_start: int = 0):
    """step(state, batch, key), or step(state, lpips_params, batch, key) when perceptual_weight
    > 0 (the frozen LPIPS params travel like the DiT step's frozen text params)."""
    weights = TaeLossWeights(kl_weight, mse_weight, l1_weight, opl_weight, opl_r, perceptual_weight,
                             opl_start)
    check_lpips(weights, lpips)

    def step(state: TrainState, lpips_params, batch: dict, key: jax.Array):
        video = video_to_float(batch["video"])
        k = accumulation_steps(optimizer)

        def loss_share(params, micro):
            micro_key = key if k == 1 else jax.random.fold_in(key, micro.index)
            clip = micro.take(video)
            recon, mean, logvar = tae.bind(params)(clip, micro_key)
            rec, rec_metrics = reconstruction_loss(recon, clip, weights, lpips, lpips_params)
            reg, reg_metrics = latent_regularizers(mean, logvar, weights, state.step)
            loss = rec + reg
            return (loss if k == 1 else loss / k), {**rec_metrics, **reg_metrics}

        (loss, aux), grads = accumulated_value_and_grad(loss_share, state.params, k, tae)
        state, metrics = apply_update(state, grads, loss, optimizer)
        return state, {**metrics, **aux}

    if perceptual_weight > 0:
        return step
    return lambda state, batch, key: step(state, None, batch, key)
