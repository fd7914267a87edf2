"""T5 encoder converter: exact agreement with transformers' T5EncoderModel (T5 v1.1 gated-GELU,
ByT5-style, original-T5 ReLU), encoder-decoder checkpoints, and the converter's loud errors."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.checkpointing.transformers_folder import load_transformers_state_dict  # noqa: E402
from mgen_jax.models.pure_model import PureModel  # noqa: E402
from mgen_jax.checkpointing.t5_convert import (load_t5_encoder,  # noqa: E402
                                             t5_config_from_transformers)
from mgen_jax.models.text.t5_encoder import T5Encoder  # noqa: E402
from tests.torch_reference import perturbed, write_variant  # noqa: E402

TINY = dict(d_model=40, d_kv=12, num_heads=5, d_ff=72, num_layers=2, vocab_size=101,
            feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
            relative_attention_max_distance=128, layer_norm_epsilon=1e-6)
BYT5 = dict(TINY, vocab_size=384, num_layers=3)
RELU = dict(TINY, feed_forward_proj="relu", num_layers=1)
LENGTHS = (7, 19, 40)  # three prompts, right-padded, the last unpadded; 40 > max_exact offsets
SEQ = 40


def _batch(vocab, lengths=LENGTHS, seq=SEQ, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.zeros((len(lengths), seq), np.int32)
    mask = np.zeros((len(lengths), seq), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n] = rng.integers(2, vocab, n)
        mask[i, :n] = 1
    return ids, mask


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _assert_matches(cfg, params, hf_encoder, label):
    ids, mask = _batch(cfg.vocab_size)
    with torch.no_grad():
        ref = hf_encoder(input_ids=torch.from_numpy(ids).long(),
                         attention_mask=torch.from_numpy(mask).long()).last_hidden_state.numpy()
    model = PureModel.create(lambda rngs: T5Encoder(cfg, rngs=rngs)).bind(params)
    ours = np.asarray(model(jnp.asarray(ids), jnp.asarray(mask)))
    real = mask.astype(bool)
    err_real, err_pad = _rel(ours[real], ref[real]), _rel(ours[~real], ref[~real])
    print(f"{label}: max rel error last_hidden_state {err_real:.2e} (real tokens), "
          f"{err_pad:.2e} (padded positions)")
    assert err_real <= 1e-5
    return err_real, err_pad


@pytest.mark.parametrize("kwargs,shard,label", [
    (TINY, None, "t5-v1.1 gated-gelu"),
    (BYT5, "60KB", "byt5-style, sharded"),
    (RELU, None, "t5 relu"),
])
def test_matches_transformers_t5_encoder(tmp_path, kwargs, shard, label):
    hf = perturbed(transformers.T5EncoderModel(transformers.T5Config(**kwargs)), 1)
    hf.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert (tmp_path / "model.safetensors.index.json").is_file()
    cfg, params = load_t5_encoder(str(tmp_path))
    assert (cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.num_layers, cfg.vocab_size,
            cfg.feed_forward_proj) == tuple(kwargs[k] for k in (
                "d_model", "d_kv", "num_heads", "num_layers", "vocab_size", "feed_forward_proj"))
    n_ours = PureModel.create(lambda rngs: T5Encoder(cfg, rngs=rngs)).num_params()
    assert n_ours == sum(p.numel() for p in hf.parameters())
    _assert_matches(cfg, params, hf, label)


def test_full_encoder_decoder_skips_decoder(tmp_path):
    hf = perturbed(transformers.T5ForConditionalGeneration(transformers.T5Config(**TINY)), 2)
    hf.save_pretrained(tmp_path)
    state = load_transformers_state_dict(str(tmp_path))
    assert any(k.startswith("decoder.") for k in state)
    cfg, params = load_t5_encoder(str(tmp_path))
    _assert_matches(cfg, params, hf.get_encoder(), "full T5ForConditionalGeneration")


def _tiny_checkpoint(tmp_path):
    hf = perturbed(transformers.T5EncoderModel(transformers.T5Config(**TINY)), 3)
    hf.save_pretrained(tmp_path / "orig")
    return hf, load_transformers_state_dict(str(tmp_path / "orig"))


def test_converter_names_extra_and_missing_keys(tmp_path):
    _, state = _tiny_checkpoint(tmp_path)
    # The tied embedding may be stored as encoder.embed_tokens.weight instead of shared.weight.
    aliased = {("encoder.embed_tokens.weight" if k == "shared.weight" else k): v
               for k, v in state.items()}
    a = load_t5_encoder(write_variant(tmp_path, "aliased", aliased))[1]
    np.testing.assert_array_equal(a["shared"], state["shared.weight"])
    both = dict(state, **{"encoder.embed_tokens.weight": state["shared.weight"] + 1})
    with pytest.raises(ValueError, match=r"encoder\.embed_tokens\.weight differs"):
        load_t5_encoder(write_variant(tmp_path, "both", both))

    # A second relative table: transformers keeps it only in block 0.
    extra = dict(state, **{"encoder.block.1.layer.0.SelfAttention.relative_attention_bias."
                           "weight": np.zeros((32, 5), np.float32)})
    with pytest.raises(ValueError, match=r"no place.*encoder\.block\.1\.layer\.0\."
                                         r"SelfAttention\.relative_attention_bias\.weight"):
        load_t5_encoder(write_variant(tmp_path, "extra", extra))

    # Decoder keys are only skipped when config.json says encoder-decoder (not T5EncoderModel).
    decoder = dict(state, **{"decoder.final_layer_norm.weight": np.ones(40, np.float32)})
    with pytest.raises(ValueError, match=r"no place.*decoder\.final_layer_norm\.weight"):
        load_t5_encoder(write_variant(tmp_path, "decoder", decoder))

    gone = "encoder.block.1.layer.1.DenseReluDense.wi_1.weight"
    missing = {k: v for k, v in state.items() if k != gone}
    with pytest.raises(ValueError, match=r"does not fill: encoder\.block\.1\.layer\.1\."
                                         r"DenseReluDense\.wi_1\.weight"):
        load_t5_encoder(write_variant(tmp_path, "missing", missing))

    key = "encoder.block.0.layer.0.SelfAttention.k.weight"
    shaped = dict(state, **{key: np.zeros((60, 41), np.float32)})
    with pytest.raises(ValueError, match=r"shape mismatches: .*SelfAttention\.k\.weight"):
        load_t5_encoder(write_variant(tmp_path, "shape", shaped))


def test_config_from_transformers():
    config = transformers.T5Config(**TINY).to_dict()
    cfg = t5_config_from_transformers(config)
    assert (cfg.d_kv, cfg.num_heads, cfg.d_model, cfg.layer_norm_eps) == (12, 5, 40, 1e-6)
    assert t5_config_from_transformers({}).feed_forward_proj == "relu"  # transformers' default
    with pytest.raises(ValueError, match="feed_forward_proj"):
        t5_config_from_transformers(dict(config, feed_forward_proj="gated-relu"))
    with pytest.raises(ValueError, match="model_type"):
        t5_config_from_transformers(dict(config, model_type="umt5"))
    with pytest.raises(ValueError, match="is_decoder"):
        t5_config_from_transformers(dict(config, is_decoder=True))
