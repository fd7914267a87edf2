"""Architecture presets of the text encoders (the encoder half of the published checkpoints, as
their config.json on the HF hub gives them), as config builders: `t5_config("ul2")`,
`clip_text_config("metaclip-h14-long")`. The modules (models/text/t5_encoder.py, clip_text.py)
read these keys; the converters (checkpointing/t5_convert.py, clip_convert.py) fill them from a
transformers config.json."""
import ml_collections

_T5_COMMON = dict(relative_attention_num_buckets=32, relative_attention_max_distance=128,
                  layer_norm_eps=1e-6)
T5_PRESETS = {
    # google/ul2, Movie Gen's UL2 ("UL2 20B": 32 + 32 layers; this is the 32-layer encoder).
    "ul2": dict(vocab_size=32128, d_model=4096, num_layers=32, num_heads=16, d_kv=256,
                d_ff=16384, feed_forward_proj="gated-silu"),
    # google/byt5-{small,base,large}: byte vocabulary (256 bytes + 3 specials + 125 extra ids).
    "byt5-small": dict(vocab_size=384, d_model=1472, num_layers=12, num_heads=6, d_kv=64,
                       d_ff=3584, feed_forward_proj="gated-gelu"),
    "byt5-base": dict(vocab_size=384, d_model=1536, num_layers=18, num_heads=12, d_kv=64,
                      d_ff=3968, feed_forward_proj="gated-gelu"),
    "byt5-large": dict(vocab_size=384, d_model=1536, num_layers=36, num_heads=16, d_kv=64,
                       d_ff=3840, feed_forward_proj="gated-gelu"),
    # The original t5-base (google-t5/t5-base), ReLU feed-forward; used by the audio model.
    "t5-base": dict(vocab_size=32128, d_model=768, num_layers=12, num_heads=12, d_kv=64,
                    d_ff=3072, feed_forward_proj="relu"),
    # Tests: odd sizes, UL2's gated-SiLU, so mis-split weights cannot line up by accident.
    "tiny": dict(vocab_size=101, d_model=40, num_layers=2, num_heads=5, d_kv=12, d_ff=72,
                 feed_forward_proj="gated-silu"),
}


def t5_config(preset: str = "ul2") -> ml_collections.ConfigDict:
    """Config of a T5-family encoder preset (the keys T5Encoder and t5_convert use)."""
    if preset not in T5_PRESETS:
        raise ValueError(f"T5 preset {preset!r} unknown; choose one of {sorted(T5_PRESETS)}")
    cfg = dict(_T5_COMMON)
    cfg.update(T5_PRESETS[preset])
    cfg["preset"] = preset
    return ml_collections.ConfigDict(cfg)



CLIP_TEXT_PRESETS = {
    # MetaCLIP ViT-H/14 text tower (facebook/metaclip-h14-fullcc2.5b): OpenCLIP-H text width.
    "metaclip-h14": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                         num_layers=24, num_heads=16, max_positions=77, hidden_act="gelu"),
    # Movie Gen's long-prompt MetaCLIP: the same tower with 256 positions (extend_positions
    # turns a 77-position checkpoint into one of these before fine-tuning).
    "metaclip-h14-long": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096,
                              num_layers=24, num_heads=16, max_positions=256, hidden_act="gelu"),
    # Tests: odd sizes so transposed / mis-split weights cannot line up by accident.
    "tiny": dict(vocab_size=99, hidden_size=40, intermediate_size=72, num_layers=2, num_heads=5,
                 max_positions=77, hidden_act="quick_gelu"),
}


def clip_text_config(preset: str = "metaclip-h14") -> ml_collections.ConfigDict:
    """Config of a CLIP text tower. `eos_token_id` is CLIP's BPE end-of-text token (49407; any
    value other than 2 pools at the first occurrence of that id, transformers' current rule)."""
    if preset not in CLIP_TEXT_PRESETS:
        raise ValueError(f"CLIP text preset {preset!r} unknown; choose one of "
                         f"{sorted(CLIP_TEXT_PRESETS)}")
    cfg = dict(layer_norm_eps=1e-5, eos_token_id=49407)
    cfg.update(CLIP_TEXT_PRESETS[preset])
    if preset == "tiny":
        cfg["eos_token_id"] = 98
    cfg["preset"] = preset
    return ml_collections.ConfigDict(cfg)
