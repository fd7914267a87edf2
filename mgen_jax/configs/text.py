"""Text encoder sub-configs (T5-style encoder over ByT5 bytes for the foundation)."""
import ml_collections

TEXT_PRESETS = {
    # Random-initialised and frozen in the quickstart: a fixed random feature map of the bytes.
    "tiny_byt5": dict(vocab_size=384, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128,
                      relative_attention_num_buckets=32, relative_attention_max_distance=128),
}


def text_config(preset: str = "tiny_byt5") -> ml_collections.ConfigDict:
    if preset not in TEXT_PRESETS:
        raise ValueError(f"text preset {preset!r} unknown; choose one of {sorted(TEXT_PRESETS)}")
    cfg = dict(TEXT_PRESETS[preset])
    cfg.update(preset=preset, max_length=64, init_seed=1234, layer_norm_eps=1e-6)
    return ml_collections.ConfigDict(cfg)
