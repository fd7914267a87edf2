"""T5 presets: UL2's gated-SiLU feed-forward against transformers' T5EncoderModel, and the
parameter counts of the ul2 / byt5 / t5-base (and MetaCLIP) presets, built abstractly, against
transformers' own models on torch's meta device and against the published model sizes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.models.pure_model import PureModel  # noqa: E402
from mgen_jax.configs.text_encoders import T5_PRESETS, clip_text_config, t5_config  # noqa: E402
from mgen_jax.models.text.clip_text import CLIPTextTransformer, clip_text_num_params  # noqa: E402
from mgen_jax.checkpointing.t5_convert import (load_t5_encoder,  # noqa: E402
                                             t5_config_from_transformers)
from mgen_jax.models.text.t5_encoder import T5Encoder, t5_num_params  # noqa: E402
from tests.torch_reference import perturbed  # noqa: E402

# Published whole-model sizes (encoder + decoder + lm head for T5s; the text tower for CLIP) and
# the decoder fields of each published config.json that our encoder-only presets leave out.
PUBLISHED = {
    # "UL2 20B": Tay et al. 2022, "UL2: Unifying Language Learning Paradigms" (arXiv:2205.05131)
    # and the google/ul2 model card. config.json has no tie_word_embeddings (transformers ties).
    "ul2": dict(size=20e9, num_decoder_layers=32, tie_word_embeddings=True),
    # Xue et al. 2022, "ByT5: Towards a Token-Free Future with Pre-trained Byte-to-Byte Models",
    # Table 1 (ByT5-Small 300M, ByT5-Large 1.23B); google/byt5-* configs: untied lm head.
    "byt5-small": dict(size=300e6, num_decoder_layers=4, tie_word_embeddings=False),
    "byt5-large": dict(size=1.23e9, num_decoder_layers=12, tie_word_embeddings=False),
    # Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
    # Transformer" (JMLR), section 3.7: T5-Base has "about 220 million parameters".
    "t5-base": dict(size=220e6, num_decoder_layers=12, tie_word_embeddings=True),
    # OpenCLIP's model profile (ViT-H-14, which MetaCLIP H/14 uses): text tower 354.03M, of
    # which 1.05M is the text projection that CLIPTextModel does not hold.
    "metaclip-h14": dict(size=354.03e6),
    "metaclip-h14-long": dict(size=354.03e6),
}
SIZE_TOLERANCE = 0.03  # the published figures are rounded ("20B", "1.23B")


def _hf_t5_config(cfg, **extra):
    return transformers.T5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.d_model, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
        relative_attention_num_buckets=cfg.relative_attention_num_buckets,
        relative_attention_max_distance=cfg.relative_attention_max_distance,
        layer_norm_epsilon=cfg.layer_norm_eps, feed_forward_proj=cfg.feed_forward_proj, **extra)


def _hf_clip_config(cfg):
    return transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, max_position_embeddings=cfg.max_positions,
        hidden_act=cfg.hidden_act, layer_norm_eps=cfg.layer_norm_eps)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # tied tensors once, as published


def test_gated_silu_matches_transformers(tmp_path):
    cfg = t5_config("tiny")
    assert cfg.feed_forward_proj == "gated-silu"
    hf = perturbed(transformers.T5EncoderModel(_hf_t5_config(cfg)), 0)
    hf.save_pretrained(tmp_path)

    loaded_cfg, params = load_t5_encoder(str(tmp_path))
    assert {k: v for k, v in loaded_cfg.items() if k != "preset"} == \
        {k: v for k, v in cfg.items() if k != "preset"}
    lengths, seq = (6, 23, 31), 31  # padded batch; 31 > max_exact offsets of the buckets
    rng = np.random.default_rng(0)
    ids, mask = np.zeros((3, seq), np.int32), np.zeros((3, seq), np.int32)
    for i, n in enumerate(lengths):
        ids[i, :n], mask[i, :n] = rng.integers(2, cfg.vocab_size, n), 1
    with torch.no_grad():
        ref = hf(input_ids=torch.from_numpy(ids).long(),
                 attention_mask=torch.from_numpy(mask).long()).last_hidden_state.numpy()
    model = PureModel.create(lambda rngs: T5Encoder(loaded_cfg, rngs=rngs))
    forward = jax.jit(lambda p, i, m: model.bind(p)(i, m))  # one compile, not one per op
    ours = np.asarray(forward(params, jnp.asarray(ids), jnp.asarray(mask)))
    real = mask.astype(bool)
    err = float(np.max(np.abs(ours[real] - ref[real])) / np.max(np.abs(ref[real])))
    print(f"gated-silu tiny T5 encoder: max rel error last_hidden_state {err:.2e} (real tokens)")
    assert err <= 1e-5


@pytest.mark.parametrize("preset", ["ul2", "byt5-small", "byt5-large", "t5-base"])
def test_t5_preset_parameter_counts(preset):
    cfg = t5_config(preset)
    ours = PureModel.create(lambda rngs: T5Encoder(cfg, rngs=rngs)).num_params()  # abstract
    with torch.device("meta"):  # shapes only, no memory
        encoder = transformers.T5EncoderModel(_hf_t5_config(cfg))
        published = PUBLISHED[preset]
        whole = transformers.T5ForConditionalGeneration(_hf_t5_config(
            cfg, num_decoder_layers=published["num_decoder_layers"],
            tie_word_embeddings=published["tie_word_embeddings"]))
    n_encoder, n_whole = _count(encoder), _count(whole)
    print(f"{preset}: encoder {ours:,} (ours) = {n_encoder:,} (transformers); whole model "
          f"{n_whole:,} vs published {published['size']:,.0f}")
    assert ours == t5_num_params(cfg) == n_encoder
    assert abs(n_whole / published["size"] - 1) <= SIZE_TOLERANCE


@pytest.mark.parametrize("preset", ["metaclip-h14", "metaclip-h14-long"])
def test_metaclip_parameter_counts(preset):
    cfg = clip_text_config(preset)
    ours = PureModel.create(lambda rngs: CLIPTextTransformer(cfg, rngs=rngs)).num_params()
    with torch.device("meta"):
        n_hf = _count(transformers.CLIPTextModel(_hf_clip_config(cfg)))
    published = PUBLISHED[preset]["size"]
    print(f"{preset}: text tower {ours:,} (ours) = {n_hf:,} (transformers) vs published "
          f"{published:,.0f}")
    assert ours == clip_text_num_params(cfg) == n_hf
    assert abs(n_hf / published - 1) <= SIZE_TOLERANCE


def test_presets_round_trip_through_transformers_config():
    """Every preset is a config transformers accepts and our converter reads back unchanged."""
    for preset in T5_PRESETS:
        cfg = t5_config(preset)
        back = t5_config_from_transformers(_hf_t5_config(cfg).to_dict())
        assert {k: v for k, v in back.items() if k != "preset"} == \
            {k: v for k, v in cfg.items() if k != "preset"}, preset
        assert cfg.preset == preset
    with pytest.raises(ValueError, match=r"'ul3'.*byt5-large"):
        t5_config("ul3")
