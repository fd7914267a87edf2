"""The audio DiT's train step (training/audio_dit_step.py): finite loss and gradients on odd sizes,
known (context) frames left out of the loss while still reaching the model, video and text
dropout equal to passing zeros / the nulls, descent on a fixed batch, and the same update
sharded on 8 devices, unsharded and in 2 micro-batches."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mgen_jax.configs.schema import default_experiment
from mgen_jax.models.builders import build_audio_dit
from mgen_jax.models.pure_model import PureModel
from mgen_jax.models.text.text_inputs import cached_text_example
from mgen_jax.parallel.logical_rules import rules_from_preset, unsharded
from mgen_jax.parallel.mesh import build_mesh
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.training.audio_dit_step import drop_video, make_audio_dit_train_step
from mgen_jax.training.dit_step import encoder_dropout_rates
from mgen_jax.training.optimizer import TrainOptimizer, make_optimizer
from mgen_jax.training.sharded_training import (batch_shardings, jit_train_step,
                                                to_device_batch, train_state_shardings)
from mgen_jax.training.train_state import TrainState

B, T, TV = 8, 13, 9  # clips, latent frames, video frames: odd frame counts on purpose
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def tiny_config():
    cfg = default_experiment()
    cfg.audio_dit.update(width=30, depth=2, num_heads=3, mlp_dim=46, max_frames=16)
    cfg.text.encoders.ul2.max_length = 5
    cfg.text.encoders.metaclip.max_length = 3
    cfg.text.encoders.byt5.max_length = 2
    cfg.text.encoders.byt5.dropout = 0.3
    return cfg


def video_dim(model: PureModel) -> int:
    return model.abstract_params()["video_proj"]["kernel"].shape[0]


def random_params(model: PureModel, seed: int = 0, scale: float = 0.05) -> dict:
    """Numpy noise on every parameter (no zero-initialised gate: every gradient is non-zero,
    and nothing is compiled to make it)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        x = scale * rng.standard_normal(leaf.shape)
        if name == "kernel":
            x = rng.standard_normal(leaf.shape) / np.sqrt(leaf.shape[-2])
        elif name == "scale":
            x = 1.0 + x
        return jnp.asarray(x, jnp.float32)
    return jax.tree_util.tree_map_with_path(draw, model.abstract_params())


def make_batch(cfg, model, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    channels = cfg.dac_vae.latent_channels
    return {"latents": rng.standard_normal((B, T, channels)).astype(np.float32),
            "video": rng.standard_normal((B, TV, video_dim(model))).astype(np.float32),
            **cached_text_example(cfg.text, B, seed=seed + 1)}


def random_nulls(cfg, seed: int = 5):
    """Non-zero null embeddings, so dropping a prompt visibly changes the step."""
    rng = np.random.default_rng(seed)
    example = cached_text_example(cfg.text, 1, seed=seed)
    null_text = {k[5:]: rng.standard_normal(v.shape[1:]).astype(np.float32)
                 for k, v in example.items() if k.startswith("text.")}
    null_mask = {k[10:]: v[0] for k, v in example.items() if k.startswith("text_mask.")}
    return null_text, null_mask


def sgd(accumulation: int = 1) -> TrainOptimizer:
    """Plain SGD: the parameters after one step show the gradient itself, lr > 0 at once."""
    schedule = optax.constant_schedule(0.1)
    return TrainOptimizer(optax.with_extra_args_support(optax.sgd(schedule)),
                          accumulation_steps=accumulation, max_consecutive_skips=0,
                          schedule=schedule)


def make_step(cfg, model, optimizer, *, video_dropout=0.3, text_dropout=None, nulls=None):
    flow = cfg.flow.copy_and_resolve_references()
    if text_dropout is not None:
        flow.text_dropout = text_dropout
    null_text, null_mask = nulls or random_nulls(cfg)
    return make_audio_dit_train_step(
        model, optimizer, flow_cfg=flow, masking_cfg=cfg.audio_dit.masking,
        null_text=null_text, null_mask=null_mask, video_dropout=video_dropout,
        encoder_dropout=encoder_dropout_rates(cfg.text))


def run(step, params, optimizer, batch, key=7):
    state, metrics = fast_jit(unsharded()(step))(TrainState.create(params, optimizer), batch,
                                                 jax.random.key(key))
    return jax.device_get(state.params), jax.device_get(metrics)


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    model = build_audio_dit(cfg)
    return cfg, model, random_params(model), make_batch(cfg, model)


def test_finite_loss_and_guard_metrics_and_descent_on_a_fixed_batch(setup):
    cfg, model, _, batch = setup
    opt_cfg = cfg.audio_dit_optimizer.copy_and_resolve_references()
    opt_cfg.update(lr=3e-3, warmup_steps=1, schedule="constant")
    optimizer = make_optimizer(opt_cfg, 10)
    step = fast_jit(unsharded()(make_step(cfg, model, optimizer)))
    state = TrainState.create(model.init(jax.random.key(0)), optimizer)
    history = []
    for _ in range(8):  # the same key: the same t, noise, masks and dropout every step
        state, m = step(state, batch, jax.random.key(3))
        history.append(jax.device_get(m))
    first = history[0]
    assert {"loss", "grad_norm", "lr", "skipped", "consecutive_skips"} <= set(first)
    assert all(float(m["skipped"]) == 0.0 for m in history)
    assert all(np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"]) for m in history)
    assert first["grad_norm"] > 0 and float(history[-1]["lr"]) == pytest.approx(3e-3)
    # A fresh model predicts 0: the first loss is E|x1 - x0|^2 per channel, about 2.
    assert 1.5 < first["loss"] < 2.5
    assert history[-1]["loss"] < 0.9 * first["loss"]


def test_bad_video_dropout_is_rejected(setup):
    cfg, model, _, _ = setup
    with pytest.raises(ValueError, match="video_dropout=1.5"):
        make_step(cfg, model, sgd(), video_dropout=1.5)


class Probe(nnx.Module):
    """The audio DiT with its prediction moved by `offset` on the frames the step marks known,
    and the context hidden from it when `hide` is 1 (both are entries of the params, so one
    compiled step serves every setting)."""

    def __init__(self, inner):
        self.inner = inner
        self.offset = nnx.Param(jnp.zeros(()))
        self.hide = nnx.Param(jnp.zeros(()))

    def __call__(self, x_t, t, text, text_mask, *, video=None, context=None,
                 context_mask=None):
        seen = context_mask * (1.0 - self.hide[...])
        v = self.inner(x_t, t, text, text_mask, video=video, context=context, context_mask=seen)
        return v + self.offset[...] * context_mask


def test_known_frames_reach_the_model_but_not_the_loss(setup):
    _, model, params, batch = setup
    cfg = tiny_config()  # every example knows 40-60% of its frames
    cfg.audio_dit.masking.update(generation=0.0, min_context=0.4, max_context=0.6)
    probe = PureModel.create(lambda rngs: Probe(model.constructor(rngs)))
    plain = run(make_step(cfg, model, sgd()), params, sgd(), batch)[1]["loss"]
    probe_step = fast_jit(unsharded()(make_step(cfg, probe, sgd())))

    def probe_loss(offset, hide):
        p = {"inner": params, "offset": jnp.float32(offset), "hide": jnp.float32(hide)}
        _, m = probe_step(TrainState.create(p, sgd()), batch, jax.random.key(7))
        return float(m["loss"])

    assert probe_loss(0.0, 0.0) == pytest.approx(plain, rel=1e-6)  # the probe is transparent
    # A prediction 100 off on every known frame changes nothing: those frames are not scored.
    assert probe_loss(100.0, 0.0) == pytest.approx(plain, rel=1e-5)
    # ... yet the model is told which frames are known: hiding them changes the loss (far
    # beyond rounding; a step that gave the model no context would leave it equal).
    assert abs(probe_loss(0.0, 1.0) - plain) > 1e-5 * plain


def test_full_video_and_text_dropout_equal_zero_video_and_null_prompts(setup):
    _, model, params, batch = setup
    cfg = tiny_config()
    cfg.text.encoders.byt5.dropout = 0.0  # nothing dropped when text_dropout is 0
    nulls = random_nulls(cfg)
    null_text, null_mask = nulls
    blank = dict(batch, video=np.zeros_like(batch["video"]))
    for name in null_text:
        blank[f"text.{name}"] = np.broadcast_to(null_text[name], batch[f"text.{name}"].shape)
        blank[f"text_mask.{name}"] = np.broadcast_to(null_mask[name],
                                                     batch[f"text_mask.{name}"].shape)
    dropped = run(make_step(cfg, model, sgd(), video_dropout=1.0, text_dropout=1.0,
                            nulls=nulls), params, sgd(), batch)
    kept_step = make_step(cfg, model, sgd(), video_dropout=0.0, text_dropout=0.0, nulls=nulls)
    given = run(kept_step, params, sgd(), blank)
    kept = run(kept_step, params, sgd(), batch)
    assert dropped[1]["loss"] == pytest.approx(given[1]["loss"], rel=1e-6)
    for a, b in zip(jax.tree.leaves(dropped[0]), jax.tree.leaves(given[0])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert abs(kept[1]["loss"] - dropped[1]["loss"]) > 1e-3 * kept[1]["loss"]


def test_drop_video_zeroes_whole_examples_at_the_rate():
    video = jnp.ones((4000, 3, 2))
    dropped = np.asarray(drop_video(jax.random.key(0), video, 0.25))
    per_example = dropped.reshape(4000, -1)
    assert set(np.unique(per_example.sum(1))) <= {0.0, 6.0}  # all or nothing per example
    assert np.mean(per_example.sum(1) == 0) == pytest.approx(0.25, abs=0.03)


@pytest.mark.slow  # three compiles of the step, two of them partitioned for 8 devices
def test_sharded_and_accumulated_steps_make_the_unsharded_update(setup):
    cfg, model, params, batch = setup
    reference = run(make_step(cfg, model, sgd()), params, sgd(), batch)
    accumulated = run(make_step(cfg, model, sgd(2)), params, sgd(2), batch)

    mesh = build_mesh(mesh_config(data=2, fsdp=2, context=1, tensor=2))
    rules = rules_from_preset("default")
    state_sh = train_state_shardings(model, sgd(), mesh, rules)
    batch_sh = batch_shardings(mesh, rules, batch)
    step = jit_train_step(make_step(cfg, model, sgd()), mesh, rules, state_sh, batch_sh)
    state = jax.device_put(TrainState.create(params, sgd()), state_sh)
    new_state, m = step(state, to_device_batch(batch, batch_sh), jax.random.key(7))
    assert new_state.params["blocks"]["ffn"]["up"]["kernel"].sharding.spec[1:] == ("fsdp", "tensor")
    sharded = (jax.device_get(new_state.params), jax.device_get(m))

    for name, (got_params, got) in (("sharded", sharded), ("2 micro-batches", accumulated)):
        assert got["loss"] == pytest.approx(reference[1]["loss"], rel=1e-5), name
        assert got["grad_norm"] == pytest.approx(reference[1]["grad_norm"], rel=1e-5), name
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(reference[0])[0],
                                jax.tree.leaves(got_params)):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}{jax.tree_util.keystr(path)}")
