"""The held-out validation loss at fixed t (training/validation.py): each t's flow-matching loss
with the batch's fixed noise, on normalised latents, against a numpy computation."""
import types

import jax
import numpy as np

from mgen_jax.training.validation import make_dit_validation_loss

FLOW = types.SimpleNamespace(sigma_min=1e-5)


class _EchoModel:
    """A stand-in DiT whose velocity is its input scaled by its one parameter."""

    def bind(self, params):
        return lambda x, t, text, mask: params["gain"] * x


def test_each_t_is_its_own_loss_with_fixed_noise():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(3, 2, 4, 5, 6)).astype(np.float32)
    batch = {"latent_mean": mean, "text.ul2": np.zeros((3, 7, 8), np.float32),
             "text_mask.ul2": np.ones((3, 7), bool)}
    ts = (0.1, 0.5, 0.9)
    loss = make_dit_validation_loss(_EchoModel(), flow_cfg=FLOW, latent_shift=0.5,
                                    latent_scale=2.0, t_values=ts)
    key = jax.random.key(3)
    got = np.asarray(jax.jit(loss)({"gain": 0.7}, None, batch, key))

    x1 = (mean - 0.5) * 2.0
    x0 = np.asarray(jax.random.normal(key, x1.shape, np.float32))
    s = FLOW.sigma_min
    want = [np.mean((0.7 * (t * x1 + (1 - (1 - s) * t) * x0) - (x1 - (1 - s) * x0)) ** 2)
            for t in ts]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # The same parameters and batch give the same numbers: the noise is the key's, not drawn.
    np.testing.assert_array_equal(np.asarray(jax.jit(loss)({"gain": 0.7}, None, batch, key)), got)
