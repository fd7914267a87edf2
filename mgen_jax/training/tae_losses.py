"""TAE loss terms beyond reconstruction + KL (Movie Gen §3.1.1): the outlier penalty (OPL) and the
patch-GAN hinge losses with taming-transformers' adaptive generator weight.

All pure functions of arrays, so they jit and differentiate like any other JAX code."""
import jax
import jax.numpy as jnp


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """sqrt with a zero (not NaN) gradient at 0: a constant channel (std 0) or a latent exactly at
    its frame mean would otherwise poison the whole gradient with inf * 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def outlier_penalty_loss(z: jax.Array, r: float = 3.0) -> jax.Array:
    """Movie Gen's Outlier Penalty Loss on latents z [B, t, h, w, C]:

        L = 1/(h w) sum_ij max(||z_ij - Mean|| - r ||Std||, 0),

    per frame (each b, t), Mean and Std per channel over (h, w), the norms L2 over channels;
    averaged over frames and batch. It penalises only locations more than r "standard radii" from
    the frame's mean latent: the high-norm "spots" the plain VAE objective learns.

    Choices the paper leaves open:
      * the formula as printed (L2 over channels), not mindone's elementwise |z - mean| - 3 std;
      * Std is the population std (ddof 0) — the paper's Std of the frame's latents;
      * Mean and Std are NOT detached (MathieuTuli's port detaches them): we differentiate the loss
        as written. Their gradient path is O(1/(h w)) per location, and scaling all latents
        scales both norms alike, so it offers no shortcut (e.g. inflating Std) that the
        direct term does not already dominate."""
    if z.ndim != 5:
        raise ValueError(f"outlier_penalty_loss expects latents [B, t, h, w, C], got {z.shape}")
    z = z.astype(jnp.float32)
    mean = jnp.mean(z, axis=(2, 3), keepdims=True)                      # [B, t, 1, 1, C]
    std = _safe_sqrt(jnp.mean(jnp.square(z - mean), axis=(2, 3), keepdims=True))
    std_norm = _safe_sqrt(jnp.sum(jnp.square(std), axis=-1))            # [B, t, 1, 1]
    dist = _safe_sqrt(jnp.sum(jnp.square(z - mean), axis=-1))           # [B, t, h, w]
    return jnp.mean(jax.nn.relu(dist - r * std_norm))


def hinge_d_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """Discriminator hinge loss, halved as in taming-transformers' hinge_d_loss."""
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - logits_real))
                  + jnp.mean(jax.nn.relu(1.0 + logits_fake)))


def generator_adversarial_loss(logits_fake: jax.Array) -> jax.Array:
    """The generator's side of the hinge GAN: raise the discriminator's score of reconstructions."""
    return -jnp.mean(logits_fake)


def adaptive_weight(nll_grad_norm: jax.Array, g_grad_norm: jax.Array,
                    max_weight: float = 1e4) -> jax.Array:
    """taming-transformers' calculate_adaptive_weight: balance the GAN term so its gradient at the
    decoder's last layer is as large as the reconstruction's. ||grad nll|| / (||grad g|| + 1e-4),
    clipped to [0, max_weight], and a constant for differentiation (stop-gradient)."""
    d_weight = nll_grad_norm / (g_grad_norm + 1e-4)
    return jax.lax.stop_gradient(jnp.clip(d_weight, 0.0, max_weight))


def disc_factor(step: jax.Array, start: int) -> jax.Array:
    """0 before `start`, 1 from `start` on (taming's adopt_weight); a jnp.where so it jits on the
    traced step counter."""
    return jnp.where(jnp.asarray(step) >= start, 1.0, 0.0).astype(jnp.float32)
