"""Pure DAC-VAE train step: the weighted objective of cfg.dac_vae (training/audio_losses.py
`dac_vae_loss`: multi-scale mel distance, multi-resolution STFT, waveform L1 and the KL of the
posterior to N(0, I)) on a reconstruction through a posterior sample, or through the posterior
mean with cfg.dac_vae.train_latent="mean".

batch {"audio": float32 [B, N]} (mono, [-1, 1]; [B, N, 1] is accepted too). Metrics: the
guarded update's (loss, grad_norm, lr, skipped, ... from train_state.apply_update) plus every
term of the loss (mel, waveform_l1, kl, and stft when weighted in) and the batch's
reconstruction SNR in dB (a log, not a loss).

With the optimizer's accumulation_steps k > 1 the batch runs as k micro-batches, each with its
own posterior-sample key (fold_in(key, j), as the TAE step: the model samples inside itself);
every term is a mean over the batch, so the mean of the micro-batches' losses is the batch's."""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.models.pure_model import PureModel
from mgen_jax.training.accumulation import accumulated_value_and_grad
from mgen_jax.training.audio_losses import dac_vae_loss
from mgen_jax.training.optimizer import accumulation_steps
from mgen_jax.training.train_state import TrainState, apply_update


def as_model_audio(audio: jax.Array) -> jax.Array:
    """[B, N] or [B, N, 1] waveforms -> float32 [B, N, 1], what DacVAE takes."""
    if audio.ndim == 2:
        audio = audio[..., None]
    if audio.ndim != 3 or audio.shape[-1] != 1:
        raise ValueError(f"the DAC-VAE step takes mono audio [B, N] or [B, N, 1], got shape "
                         f"{audio.shape}")
    return audio.astype(jnp.float32)


def snr_db(estimate: jax.Array, target: jax.Array) -> jax.Array:
    """Waveform SNR in dB of a batch: 10 log10(sum target^2 / sum (target - estimate)^2)."""
    signal = jnp.sum(jnp.square(target))
    noise = jnp.sum(jnp.square(target - estimate))
    return 10.0 * jnp.log10(signal / noise)


def make_dac_vae_train_step(model: PureModel, optimizer: optax.GradientTransformation, cfg_dac):
    """step(state, batch, key) -> (state, metrics) for the DAC-VAE of `cfg_dac` (cfg.dac_vae),
    whose loss weights and mel / STFT settings it reads once, at trace time."""

    def step(state: TrainState, batch: dict, key: jax.Array):
        audio = as_model_audio(batch["audio"])
        k = accumulation_steps(optimizer)

        def loss_share(params, micro):
            micro_key = key if k == 1 else jax.random.fold_in(key, micro.index)
            clip = micro.take(audio)
            recon, mean, logvar = model.bind(params)(
                clip, micro_key if cfg_dac.train_latent == "posterior" else None)
            if recon.shape != clip.shape:  # DAC's transposed conv ends short on odd strides
                raise ValueError(f"the DAC-VAE decodes {clip.shape[1]} samples to "
                                 f"{recon.shape[1]}: train with even dac_vae.decoder_rates "
                                 f"(got {tuple(cfg_dac.decoder_rates)})")
            loss, terms = dac_vae_loss(cfg_dac, clip, recon, mean, logvar)
            terms["snr_db"] = snr_db(jax.lax.stop_gradient(recon), clip)
            return (loss if k == 1 else loss / k), terms

        (loss, aux), grads = accumulated_value_and_grad(loss_share, state.params, k, model)
        state, metrics = apply_update(state, grads, loss, optimizer)
        return state, {**metrics, **aux}

    return step
