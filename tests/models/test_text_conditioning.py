"""The three-encoder text path: prompts routed to each encoder (FPS tag, ByT5's quoted text),
the frozen encoder set, classifier-free-guidance dropout per encoder, and config validation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.text import encoder_spec, text_shapes
from mgen_jax.configs.validation import ConfigError, validate
from mgen_jax.models.builders import build_dit, build_text_encoders
from mgen_jax.models.text.conditioner import drop_text
from mgen_jax.checkpointing.text_encoder_checkpoint import text_encoder_params
from mgen_jax.models.text.text_inputs import (encoder_inputs, split_fields, token_fields,
                                              tokenize_prompts)
from mgen_jax.models.text.tokenizer import tokenize_bytes


def tokenizer_words(ids, mask):
    from mgen_jax.models.text.shapes_tokenizer import shapes_vocabulary
    vocab = shapes_vocabulary()
    return [vocab[i] for i, m in zip(ids, mask) if m]


def _cfg(**text):
    cfg = default_experiment()
    cfg.text.update(text)
    return cfg


def test_prompt_encoders_see_the_tagged_prompt_byt5_only_the_quoted_text():
    cfg = _cfg(fps_tag=True)
    inputs = encoder_inputs(cfg.text, ['a sign reading "OPEN" on a door', "a cat", ""], fps=16)
    assert inputs["ul2"][0] == inputs["metaclip"][0]
    assert inputs["ul2"][0].startswith("FPS-16") and inputs["ul2"][0].endswith(
        'a sign reading "OPEN" on a door')
    assert inputs["byt5"] == ["OPEN", "", ""]
    assert inputs["ul2"][2] == ""  # the empty prompt is the CFG null: never tagged
    tokens = tokenize_prompts(cfg.text, ['a sign reading "OPEN" on a door'], fps=16)
    np.testing.assert_array_equal(tokens["byt5"]["ids"], tokenize_bytes(["OPEN"], 8)["ids"])
    assert {k: v.shape for k, v in token_fields(tokens).items()} == {
        "ids.byt5": (1, 8), "mask.byt5": (1, 8), "ids.metaclip": (1, 24),
        "mask.metaclip": (1, 24), "ids.ul2": (1, 24), "mask.ul2": (1, 24)}
    # The quickstart's word tokenizer: one token per word, digit and punctuation mark, </s>.
    words = tokenizer_words(tokens["ul2"]["ids"][0], tokens["ul2"]["mask"][0])
    assert words == ["fps", "-", "1", "6", ".", "a", "<unk>", "<unk>", '"', "<unk>", '"', "on",
                     "a", "<unk>", "</s>"]
    assert set(split_fields(token_fields(tokens), "ids")) == {"byt5", "metaclip", "ul2"}


@pytest.mark.slow  # three encoders compiled (~25 s); each encoder has its own default test
def test_encoder_set_outputs_each_encoders_hidden_states():
    cfg = _cfg()
    model = build_text_encoders(cfg)
    params = text_encoder_params(cfg.text, model, None)
    assert set(params["encoders"]) == {"byt5", "metaclip", "ul2"}
    tokens = tokenize_prompts(cfg.text, ["a red circle", 'text "A"'])
    out = model.bind(params)({n: t["ids"] for n, t in tokens.items()},
                             {n: t["mask"] for n, t in tokens.items()})
    for name, (length, dim) in text_shapes(cfg.text).items():
        assert out[name].shape == (2, length, dim)
    assert not np.allclose(out["byt5"][0], out["byt5"][1])  # "" vs "A"
    # Same seed -> same frozen random features (inference rebuilds them from the config).
    again = text_encoder_params(cfg.text, model, None)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)):
        np.testing.assert_array_equal(a, b)


def _text_batch(b=64):
    rng = np.random.default_rng(0)
    text = {"a": jnp.asarray(rng.normal(size=(b, 3, 2)) + 5.0), "b": jnp.asarray(rng.normal(size=(b, 4)) + 5.0)}
    mask = {"a": jnp.ones((b, 3), jnp.int32), "b": jnp.ones((b, 4), jnp.int32)}
    null_text = {"a": jnp.zeros((3, 2)), "b": jnp.zeros((4,))}
    null_mask = {"a": jnp.array([1, 0, 0]), "b": jnp.array([1, 0, 0, 0])}
    return text, mask, null_text, null_mask


def _dropped(text, out):
    return {n: np.asarray(jnp.all(out[n].reshape(out[n].shape[0], -1) == 0, axis=1))
            for n in text}


def test_drop_text_joint_and_per_encoder():
    text, mask, null_text, null_mask = _text_batch()
    key = jax.random.key(0)
    out, out_mask = drop_text(key, text, mask, null_text, null_mask, 0.0)
    for n in text:
        np.testing.assert_array_equal(out[n], text[n])
    out, out_mask = drop_text(key, text, mask, null_text, null_mask, 0.999999)
    for n in text:  # everything replaced by that encoder's null, masks too
        np.testing.assert_array_equal(out[n], jnp.broadcast_to(null_text[n], text[n].shape))
        np.testing.assert_array_equal(out_mask[n], jnp.broadcast_to(null_mask[n], mask[n].shape))
    # Joint dropout drops both encoders of the same examples.
    out, _ = drop_text(key, text, mask, null_text, null_mask, 0.5)
    d = _dropped(text, out)
    np.testing.assert_array_equal(d["a"], d["b"])
    assert 0 < d["a"].sum() < len(d["a"])
    # A per-encoder rate drops that encoder alone.
    out, _ = drop_text(key, text, mask, null_text, null_mask, 0.0, {"a": 0.999999, "b": 0.0})
    d = _dropped(text, out)
    assert d["a"].all() and not d["b"].any()


def test_ablation_with_two_encoders_builds_and_bad_specs_name_the_key():
    cfg = _cfg()
    del cfg.text.encoders["byt5"]
    validate(cfg)
    dit = build_dit(cfg)
    assert set(dit.abstract_params()["conditioner"]["projections"]) == {"metaclip", "ul2"}

    bad = _cfg()
    bad.text.encoders.ul2.kind = "bert"
    with pytest.raises(ConfigError, match="text.encoders.ul2.kind"):
        validate(bad)
    bad = _cfg()
    bad.text.encoders.metaclip.max_length = 33  # the tiny tower has 32 positions
    with pytest.raises(ConfigError, match="text.encoders.metaclip.max_length"):
        validate(bad)
    bad = _cfg()
    bad.text.encoders.byt5.model = encoder_spec("clip", "tiny_clip", max_length=8).model
    with pytest.raises(ConfigError, match="text.encoders.byt5.model"):
        validate(bad)
    bad = _cfg()
    bad.text.encoders.ul2.input = "caption"
    with pytest.raises(ConfigError, match="text.encoders.ul2.input"):
        validate(bad)
    bad = _cfg()
    bad.text.encoders.ul2.colour = "red"
    with pytest.raises(ConfigError, match="text.encoders.ul2.colour"):
        validate(bad)


def test_each_prompt_can_carry_its_own_clips_fps():
    cfg = _cfg(fps_tag=True)
    inputs = encoder_inputs(cfg.text, ["a cat", "a dog", ""], fps=[24, 16.0, 30])
    assert inputs["ul2"][0].startswith("FPS-24") and inputs["ul2"][1].startswith("FPS-16")
    assert inputs["ul2"][2] == ""
    with pytest.raises(ValueError, match="2 fps values for 3 prompts"):
        encoder_inputs(cfg.text, ["a", "b", "c"], fps=[8, 8])
