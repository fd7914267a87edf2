"""CLIP / MetaCLIP text tower: exact agreement with transformers' CLIPTextModel, the converter's
loud errors, 77 -> 256 position extension, and the MetaCLIP-H/14 parameter count."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.checkpointing.transformers_folder import load_transformers_state_dict  # noqa: E402
from mgen_jax.models.pure_model import PureModel  # noqa: E402
from mgen_jax.checkpointing.clip_convert import load_clip_text  # noqa: E402
from mgen_jax.configs.text_encoders import clip_text_config  # noqa: E402
from mgen_jax.models.text.clip_text import CLIPTextTransformer, extend_positions  # noqa: E402
from tests.torch_reference import perturbed, write_variant  # noqa: E402

TINY = dict(vocab_size=99, hidden_size=40, num_attention_heads=5, num_hidden_layers=2,
            intermediate_size=72, layer_norm_eps=1e-5, bos_token_id=0, pad_token_id=1)
LENGTHS = (5, 11, 24)  # three prompts, the last one unpadded
SEQ = 24


def _text_config(hidden_act, max_positions, eos):
    return transformers.CLIPTextConfig(**TINY, hidden_act=hidden_act,
                                       max_position_embeddings=max_positions,
                                       eos_token_id=eos)


def _batch(eos, lengths=LENGTHS, seq=SEQ, seed=0):
    """Right-padded ids with the end-of-text token at each prompt's end. With the legacy
    eos_token_id == 2, transformers pools at the largest id, so end-of-text is 98 (the top of the
    vocabulary) and padding is 0. Otherwise end-of-text is `eos`, the other tokens are all
    larger (an argmax pooling would pick the wrong position) and padding repeats it (pooling must
    take the first occurrence)."""
    rng = np.random.default_rng(seed)
    end, pad, low, high = (98, 0, 3, 98) if eos == 2 else (eos, eos, eos + 1, 99)
    ids = np.full((len(lengths), seq), pad, np.int32)
    mask = np.zeros((len(lengths), seq), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n - 1] = rng.integers(low, high, n - 1)
        ids[i, n - 1] = end
        mask[i, :n] = 1
    return ids, mask


def _reference(hf_text, ids, mask):
    with torch.no_grad():
        out = hf_text(input_ids=torch.from_numpy(ids).long(),
                      attention_mask=torch.from_numpy(mask).long())
    return out.last_hidden_state.numpy(), out.pooler_output.numpy()


def _ours(cfg, params, ids, mask):
    model = PureModel.create(lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).bind(params)
    hidden, pooled = model(jnp.asarray(ids), jnp.asarray(mask))
    return np.asarray(hidden), np.asarray(pooled)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _assert_matches(cfg, params, hf_text, eos, label):
    ids, mask = _batch(eos)
    ref_hidden, ref_pooled = _reference(hf_text, ids, mask)
    hidden, pooled = _ours(cfg, params, ids, mask)
    err_h, err_p = _rel(hidden, ref_hidden), _rel(pooled, ref_pooled)
    print(f"{label}: max rel error last_hidden_state {err_h:.2e}, pooler_output {err_p:.2e}")
    assert err_h <= 1e-5 and err_p <= 1e-5


@pytest.mark.parametrize("hidden_act,max_positions,eos,shard", [
    ("quick_gelu", 77, 2, None),     # legacy argmax pooling, single model.safetensors
    ("gelu", 256, 50, "40KB"),       # first-eos pooling, sharded safetensors + index
])
def test_matches_transformers_clip_text_model(tmp_path, hidden_act, max_positions, eos, shard):
    hf = perturbed(transformers.CLIPTextModel(_text_config(hidden_act, max_positions, eos)), 1)
    hf.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert os.path.isfile(tmp_path / "model.safetensors.index.json")
    cfg, params = load_clip_text(str(tmp_path))
    assert (cfg.hidden_act, cfg.max_positions, cfg.eos_token_id) == (hidden_act, max_positions,
                                                                      eos)
    n_ours = PureModel.create(lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).num_params()
    assert n_ours == sum(p.numel() for p in hf.parameters())
    _assert_matches(cfg, params, hf, eos, f"{hidden_act}/{max_positions}/eos={eos}")


def test_full_clip_model_skips_vision_tower(tmp_path):
    config = transformers.CLIPConfig(
        text_config=dict(TINY, hidden_act="gelu", max_position_embeddings=77, eos_token_id=50),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                           num_attention_heads=2, image_size=30, patch_size=15),
        projection_dim=24)
    hf = perturbed(transformers.CLIPModel(config), 2)
    hf.save_pretrained(tmp_path)
    cfg, params = load_clip_text(str(tmp_path))
    _assert_matches(cfg, params, hf.text_model, 50, "full CLIPModel")


def _tiny_checkpoint(tmp_path):
    hf = perturbed(transformers.CLIPTextModel(_text_config("quick_gelu", 77, 2)), 3)
    hf.save_pretrained(tmp_path / "orig")
    return hf, load_transformers_state_dict(str(tmp_path / "orig"))


def test_converter_names_extra_and_missing_keys(tmp_path):
    _, state = _tiny_checkpoint(tmp_path)
    prefix = "text_model." if any(k.startswith("text_model.") for k in state) else ""
    # The `text_model.` prefix is optional: both spellings load to the same params.
    bare = {k.removeprefix("text_model."): v for k, v in state.items()}
    prefixed = {"text_model." + k: v for k, v in bare.items()}
    a = load_clip_text(write_variant(tmp_path, "bare", bare))[1]
    b = load_clip_text(write_variant(tmp_path, "prefixed", prefixed))[1]
    np.testing.assert_array_equal(a["layers"][1]["mlp"]["fc2"]["kernel"],
                                  b["layers"][1]["mlp"]["fc2"]["kernel"])

    extra = dict(state, **{"text_model.encoder.layers.9.mlp.fc1.weight": np.zeros((2, 2),
                                                                                   np.float32)})
    with pytest.raises(ValueError, match=r"no place.*encoder\.layers\.9\.mlp\.fc1\.weight"):
        load_clip_text(write_variant(tmp_path, "extra", extra))

    # Vision keys are only skipped for a full CLIPModel (its config has text_config).
    vision = dict(state, **{"vision_model.post_layernorm.weight": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"vision_model\.post_layernorm\.weight"):
        load_clip_text(write_variant(tmp_path, "vision", vision))

    gone = f"{prefix}encoder.layers.1.layer_norm2.bias"
    missing = {k: v for k, v in state.items() if k != gone}
    with pytest.raises(ValueError, match=r"does not fill: text_model\.encoder\.layers\.1\."
                                         r"layer_norm2\.bias"):
        load_clip_text(write_variant(tmp_path, "missing", missing))

    key = f"{prefix}encoder.layers.0.self_attn.k_proj.weight"
    shaped = dict(state, **{key: np.zeros((40, 41), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatches: .*k_proj\.weight"):
        load_clip_text(write_variant(tmp_path, "shape", shaped))


def test_extend_positions_keeps_short_prompts_exact(tmp_path):
    hf, _ = _tiny_checkpoint(tmp_path)
    cfg, params = load_clip_text(str(tmp_path / "orig"))
    old = np.asarray(params["position_embedding"])
    long_params = extend_positions(params, 256)            # keep=20, as documented
    new = np.asarray(long_params["position_embedding"])
    assert new.shape == (256, old.shape[1])
    np.testing.assert_array_equal(new[:21], old[:21])       # copied rows, and the stretch start
    np.testing.assert_array_equal(new[-1], old[-1])         # stretch end
    # Every stretched row lies between its two neighbouring old rows.
    src = np.linspace(20, 76, 236)
    lo, hi = old[np.floor(src).astype(int)], old[np.minimum(np.floor(src).astype(int) + 1, 76)]
    assert np.all(new[20:] >= np.minimum(lo, hi) - 1e-6)
    assert np.all(new[20:] <= np.maximum(lo, hi) + 1e-6)
    plain = extend_positions(old, 256, keep=0)              # plain linear interpolation
    np.testing.assert_array_equal(plain[[0, -1]], old[[0, -1]])

    long_cfg = cfg.copy_and_resolve_references()
    long_cfg.max_positions = 256
    ids77, mask77 = _batch(2, lengths=(12, 20), seq=77)      # prompts of <= keep tokens
    ids256, mask256 = _batch(2, lengths=(12, 20), seq=256)
    h_old, p_old = _ours(cfg, params, ids77, mask77)
    h_new, p_new = _ours(long_cfg, long_params, ids256, mask256)
    err_h = max(_rel(h_new[i, :n], h_old[i, :n]) for i, n in enumerate((12, 20)))
    err_p = _rel(p_new, p_old)
    print(f"extend 77->256: short-prompt rel error hidden {err_h:.2e}, pooled {err_p:.2e}")
    assert err_h <= 1e-6 and err_p <= 1e-6
    # And the original model agrees with transformers at 77 positions on the same prompts.
    ref_h, ref_p = _reference(hf, ids77, mask77)
    assert _rel(p_old, ref_p) <= 1e-5


def _expected_clip_text_params(cfg) -> int:
    """Counted module by module as transformers' CLIPTextModel is built."""
    d, f = cfg.hidden_size, cfg.intermediate_size
    linear = lambda i, o: i * o + o
    layer_norm = 2 * d
    embeddings = cfg.vocab_size * d + cfg.max_positions * d
    block = 4 * linear(d, d) + linear(d, f) + linear(f, d) + 2 * layer_norm
    return embeddings + cfg.num_layers * block + layer_norm


def test_metaclip_h14_long_builds_abstractly():
    counts = {}
    for preset in ("metaclip-h14", "metaclip-h14-long"):
        cfg = clip_text_config(preset)
        counts[preset] = PureModel.create(
            lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).num_params()
        print(f"{preset}: {counts[preset]:,} parameters")
        assert counts[preset] == _expected_clip_text_params(cfg)
    assert 340e6 <= counts["metaclip-h14"] <= 370e6          # published ~354M text tower
    assert counts["metaclip-h14-long"] - counts["metaclip-h14"] == (256 - 77) * 1024
    assert clip_text_config("metaclip-h14-long").max_positions == 256


def test_config_from_full_and_text_dicts():
    from mgen_jax.checkpointing.clip_convert import clip_config_from_transformers
    text = transformers.CLIPTextConfig(**TINY, hidden_act="gelu", eos_token_id=98).to_dict()
    full = json.loads(json.dumps({"model_type": "clip", "text_config": text,
                                  "vision_config": {}}))
    a, b = clip_config_from_transformers(text), clip_config_from_transformers(full)
    assert a.to_dict() == b.to_dict()
    assert (a.hidden_size, a.num_heads, a.num_layers, a.eos_token_id) == (40, 5, 2, 98)
    assert clip_config_from_transformers({}).eos_token_id == 49407  # transformers' default
    with pytest.raises(ValueError, match="hidden_act"):
        clip_config_from_transformers(dict(text, hidden_act="relu"))
