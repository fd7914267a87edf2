"""Pure DiT train steps: flow matching on normalised TAE latents with text dropout for CFG.

Three entry points share one update:
  * `make_dit_train_step`: prompts arrive as each encoder's token ids (batch fields
    `ids.<encoder>` / `mask.<encoder>`) and the frozen text encoders run inside the step (the
    quickstart);
  * `make_dit_train_step_on_embeddings`: prompts arrive as cached encoder outputs (fields
    `text.<encoder>` / `text_mask.<encoder>`: `mgen data precompute-text`, pod-scale training,
    `mgen plan`);
  * `make_packed_dit_train_step`: cached outputs on NaViT-packed rows of clips of mixed shapes.
Dropout for classifier-free guidance replaces prompts by each encoder's null (the empty prompt):
all encoders at once with flow.text_dropout, one alone with its text.encoders.<name>.dropout.

With the optimizer's accumulation_steps k > 1 the batch runs as k micro-batches
(training/accumulation.py): every random draw (text dropout, posterior sample, flow t and noise)
is made for the whole batch with the step's key, exactly as without accumulation, and each
micro-batch's rows of it go through the DiT, so the update equals the whole batch's.
"""
import jax
import jax.numpy as jnp
import optax

from mgen_jax.flow.loss import flow_matching_loss, packed_flow_matching_loss
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.tae.latent_scaling import normalize_latents
from mgen_jax.models.text.conditioner import drop_text
from mgen_jax.models.text.text_inputs import split_fields
from mgen_jax.training.accumulation import accumulated_value_and_grad
from mgen_jax.training.optimizer import accumulation_steps
from mgen_jax.training.train_state import TrainState, apply_update


def _target_latents(batch: dict, key, flow_cfg, latent_shift: float, latent_scale: float):
    mean, logvar = batch["latent_mean"], batch["latent_logvar"]
    z = mean
    if flow_cfg.latent_sample == "posterior":
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape)
    return normalize_latents(z, latent_shift, latent_scale)


def accumulated_update(dit: PureModel, optimizer, state: TrainState, loss_share):
    """One optimizer step on the batch's loss, accumulated over the optimizer's micro-batches:
    loss_share(bound DiT, micro) -> (the micro-batch's share of the batch's loss, aux)."""
    (loss, _), grads = accumulated_value_and_grad(
        lambda p, micro: loss_share(dit.bind(p), micro), state.params,
        accumulation_steps(optimizer), dit)
    return apply_update(state, grads, loss, optimizer)


def _flow_update(dit: PureModel, optimizer, flow_cfg, state: TrainState, x1, encode_text, key):
    """encode_text(micro) -> (text, mask) of the micro-batch's rows."""
    def loss_share(model, micro):
        text, mask = encode_text(micro)

        def velocity(x, t):  # the batch's x_t and t: only the micro-batch's rows run the DiT
            return micro.put(x, model(micro.take(x), micro.take(t), text, mask))

        loss, aux = flow_matching_loss(velocity, x1, key, sigma_min=flow_cfg.sigma_min,
                                       t_mean=flow_cfg.t_logit_mean, t_std=flow_cfg.t_logit_std)
        per_example = aux["per_example_loss"]
        return micro.share(loss, per_example, per_example.shape[0]), None

    return accumulated_update(dit, optimizer, state, loss_share)


def micro_rows(micro, tree: dict) -> dict:
    """The micro-batch's rows of every array of a {name: [B, ...]} tree."""
    return {name: micro.take(a) for name, a in tree.items()}


def make_dit_train_step(dit: PureModel, text_encoders: PureModel,
                        optimizer: optax.GradientTransformation, *, flow_cfg, latent_shift: float,
                        latent_scale: float, empty_tokens: dict, encoder_dropout=None):
    """step(state, text_params, batch{ids.<name>, mask.<name>, latent_mean, latent_logvar}, key);
    empty_tokens {name: {ids [L], mask [L]}} is the empty prompt's tokens."""
    null_ids = {n: jnp.asarray(t["ids"]) for n, t in empty_tokens.items()}
    null_mask = {n: jnp.asarray(t["mask"]) for n, t in empty_tokens.items()}

    def train_step(state: TrainState, text_params: dict, batch: dict, key: jax.Array):
        k_drop, k_latent, k_flow = jax.random.split(key, 3)
        ids, mask = drop_text(k_drop, split_fields(batch, "ids"), split_fields(batch, "mask"),
                              null_ids, null_mask, flow_cfg.text_dropout, encoder_dropout)
        x1 = _target_latents(batch, k_latent, flow_cfg, latent_shift, latent_scale)

        def encode_text(micro):  # frozen encoders, on the micro-batch's prompts
            m = micro_rows(micro, mask)
            return jax.lax.stop_gradient(text_encoders.bind(text_params)(micro_rows(micro, ids), m)), m

        return _flow_update(dit, optimizer, flow_cfg, state, x1, encode_text, k_flow)

    return train_step


def make_dit_train_step_on_embeddings(dit: PureModel, optimizer: optax.GradientTransformation, *,
                                      flow_cfg, latent_shift: float, latent_scale: float,
                                      null_text: dict, null_mask: dict, encoder_dropout=None):
    """step(state, batch{text.<name> [B, L, D], text_mask.<name> [B, L], latent_mean,
    latent_logvar}, key); null_text {name: [L, D]} / null_mask {name: [L]} are each encoder's
    cached embedding of the empty prompt."""

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        k_drop, k_latent, k_flow = jax.random.split(key, 3)
        text, mask = drop_text(k_drop, split_fields(batch, "text"),
                               split_fields(batch, "text_mask"), null_text, null_mask,
                               flow_cfg.text_dropout, encoder_dropout)
        x1 = _target_latents(batch, k_latent, flow_cfg, latent_shift, latent_scale)
        return _flow_update(dit, optimizer, flow_cfg, state, x1,
                            lambda micro: (micro_rows(micro, text), micro_rows(micro, mask)), k_flow)

    return train_step


def make_packed_dit_train_step(dit: PureModel, optimizer: optax.GradientTransformation, *,
                               flow_cfg, latent_shift: float, latent_scale: float,
                               null_text: dict, null_mask: dict, encoder_dropout=None):
    """step(state, batch, key) on packed rows (data_pipelines/packing.py): batch has tokens
    [B, N, P] (patchified latent means), coords [B, N, 3], segments [B, N], text.<name>
    [B, S, L, D] and text_mask.<name> [B, S, L]; each clip gets its own t and text dropout."""

    def train_step(state: TrainState, batch: dict, key: jax.Array):
        k_drop, k_flow = jax.random.split(key)
        text, mask = split_fields(batch, "text"), split_fields(batch, "text_mask")
        b, s = batch["segments"].shape[0], next(iter(mask.values())).shape[1]
        per_clip = lambda tree: {n: a.reshape(b * s, *a.shape[2:]) for n, a in tree.items()}
        text, mask = drop_text(k_drop, per_clip(text), per_clip(mask), null_text, null_mask,
                               flow_cfg.text_dropout, encoder_dropout)
        rows = lambda tree: {n: a.reshape(b, s, *a.shape[1:]) for n, a in tree.items()}
        text, mask = rows(text), rows(mask)
        x1 = normalize_latents(batch["tokens"], latent_shift, latent_scale)

        def loss_share(model, micro):
            def velocity(x, t):  # the batch's x_t and t: only the micro-batch's rows run the DiT
                take = micro.take
                return micro.put(x, model.forward_packed(
                    take(x), take(batch["coords"]), take(batch["segments"]), take(t),
                    micro_rows(micro, text), micro_rows(micro, mask)))

            loss, aux = packed_flow_matching_loss(velocity, x1, batch["segments"], s, k_flow,
                                                  sigma_min=flow_cfg.sigma_min,
                                                  t_mean=flow_cfg.t_logit_mean,
                                                  t_std=flow_cfg.t_logit_std)
            # The loss is the mean over the batch's present clips: each row's clip sum over
            # the batch's clip count.
            present = aux["clip_present"]
            row_terms = jnp.sum(jnp.where(present, aux["per_clip_loss"], 0.0), axis=1)
            return micro.share(loss, row_terms, jnp.maximum(jnp.sum(present), 1)), None

        return accumulated_update(dit, optimizer, state, loss_share)

    return train_step


def encoder_dropout_rates(text_cfg) -> dict:
    """{name: text.encoders.<name>.dropout} for the steps' encoder_dropout."""
    return {name: float(spec.dropout) for name, spec in text_cfg.encoders.items()}
