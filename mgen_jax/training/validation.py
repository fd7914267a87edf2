"""Held-out validation loss at fixed t, Movie Gen's development proxy: the flow-matching loss on
clips never trained on (the dataset's last `validation_clips` records), at each t of
`validation_t`, with noise fixed per batch, so one run's curve moves only with the parameters and
runs of a sweep compare point for point. Logged as phase "<phase>_val": `loss` (mean over t)
and `loss_t=<t>` each. With plateau_on=validation_loss the mean also advances the optimizer's
plateau state (the lr steps down when it stops improving)."""
import jax
import jax.numpy as jnp

from mgen_jax.flow.path import interpolate, velocity_target
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.latent_scaling import normalize_latents
from mgen_jax.models.text.text_inputs import split_fields
from mgen_jax.parallel.distributed import compile_together
from mgen_jax.parallel.logical_rules import activation_sharding
from mgen_jax.training.metrics import MetricsWriter


def make_dit_validation_loss(dit: PureModel, *, flow_cfg, latent_shift: float,
                             latent_scale: float, t_values, text_encoders: PureModel | None = None):
    """loss(params, text_params, batch, key) -> [len(t_values)] mean losses. Prompts come as
    cached embeddings (`text.<name>`, text_encoders None) or token ids encoded by the frozen
    encoders; no text dropout, the posterior mean as the clean latent."""
    t_values = jnp.asarray(tuple(t_values), jnp.float32)

    def loss(params, text_params, batch, key):
        x1 = normalize_latents(batch["latent_mean"], latent_shift, latent_scale)
        if text_encoders is None:
            text, mask = split_fields(batch, "text"), split_fields(batch, "text_mask")
        else:
            mask = split_fields(batch, "mask")
            text = text_encoders.bind(text_params)(split_fields(batch, "ids"), mask)
        model = dit.bind(params)
        x0 = jax.random.normal(key, x1.shape, x1.dtype)
        target = velocity_target(x0, x1, flow_cfg.sigma_min)

        def at(t):  # one DiT forward per t, compiled once (lax.map)
            tt = jnp.full((x1.shape[0],), t)
            pred = model(interpolate(x0, x1, tt, flow_cfg.sigma_min), tt, text, mask)
            return jnp.mean(jnp.square(pred.astype(jnp.float32) - target))

        return jax.lax.map(at, t_values)

    return loss


# The validation noise is the same for every run (not drawn from cfg.seed): runs of a sweep or
# of another seed, and the stages of a recipe, are scored on the same noise, so their losses
# compare.
VALIDATION_NOISE_SEED = 20241004


def validation_noise_key() -> jax.Array:
    return jax.random.key(VALIDATION_NOISE_SEED)


class ValidationHook:
    """Before the first step (step 0: where a chained stage starts from its source's model),
    every `every` steps and at the phase's last step: the validation losses of the state's
    parameters over the held-out batches (device arrays), written by `writer`."""

    def __init__(self, loss_fn, batches: list, *, every: int, num_steps: int, t_values,
                 mesh, rules, key: jax.Array, writer: MetricsWriter, text_params=None,
                 record_plateau=None):
        """record_plateau(opt_state, loss) -> opt_state (optimizer.validation_plateau_update)."""
        self.batches, self.every, self.num_steps = batches, every, num_steps
        self.t_values = tuple(float(t) for t in t_values)
        self.keys = [jax.random.fold_in(key, i) for i in range(len(batches))]
        self.writer, self.text_params, self.record_plateau = writer, text_params, record_plateau

        def traced(*args):
            with activation_sharding(mesh, rules):
                return loss_fn(*args)
        self.loss = jax.jit(traced)
        self.compiled = False

    def begin(self, start: int, state):
        """A resumed run drops the validation lines logged after its checkpoint; a fresh one
        logs step 0."""
        self.writer.truncate_after(start if start else -1)  # step 0 is logged again
        return self.validate(0, state) if start == 0 else state

    def after_step(self, done: int, state):
        if done % self.every and done != self.num_steps:
            return state
        return self.validate(done, state)

    def validate(self, done: int, state):
        if not self.compiled:
            compile_together(self.loss, state.params, self.text_params, self.batches[0],
                             self.keys[0], name="validation loss")
            self.compiled = True
        per_t = sum(self.loss(state.params, self.text_params, batch, key)
                    for batch, key in zip(self.batches, self.keys)) / len(self.batches)
        if self.record_plateau is not None:  # kept in the train step's shardings
            recorded = self.record_plateau(state.opt_state, per_t.mean())
            state = state.replace(opt_state=jax.tree.map(
                lambda new, old: jax.device_put(new, old.sharding), recorded, state.opt_state))
        per_t = jax.device_get(per_t)
        metrics = {"loss": float(per_t.mean())}
        metrics.update({f"loss_t={t:g}": float(v) for t, v in zip(self.t_values, per_t)})
        self.writer.write(done, metrics)
        return state

    def close(self) -> None:
        self.writer.close()
