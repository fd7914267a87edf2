"""Text conditioning config: the frozen encoders whose outputs the DiT cross-attends to.

`cfg.text.encoders` maps a name to one encoder spec; Movie Gen uses three (`ul2`, `metaclip`,
`byt5`), an ablation may keep any subset. Each spec says what the encoder is and what it reads:

    kind        't5' (T5 v1.1 / UL2 / ByT5 / T5) or 'clip' (CLIP / MetaCLIP text tower)
    preset      architecture preset name (informational once `model` is filled in)
    model       the architecture (keys of t5_config / clip_text_config)
    max_length  tokens kept per prompt (padding / truncation)
    input       'prompt' (the formatted prompt) or 'visual_text' (only the quoted text, ByT5)
    tokenizer   'bytes' (ByT5's byte tokenizer, no files), 'shapes_words' (the Shapes data's word
                vocabulary, the quickstart's), a local transformers tokenizer dir,
                or '' = the tokenizer files of `checkpoint` (a transformers folder)
    checkpoint  '' = random init from text.init_seed (frozen random features, the quickstart);
                otherwise a transformers folder or a `mgen convert` output directory
    dropout     extra per-encoder probability of replacing this encoder's output by its null
                embedding (independent of flow.text_dropout, which drops all encoders together)

The encoders' outputs are concatenated along the sequence in sorted-name order (cross-attention
has no positions, so the order only fixes the layout). The null embedding of an encoder is its
output for the empty prompt (the encoders are frozen, so it is a constant).
"""
import ml_collections

from mgen_jax.configs.registries import TEXT_ENCODER_KINDS

INPUTS = ("prompt", "visual_text")

# Tiny random encoders for the quickstart and tests (no vocabulary files can be downloaded here):
# a UL2-like T5, a CLIP-like causal tower and a ByT5-like T5; vocab 384 covers bytes and words.
_TINY_T5 = dict(vocab_size=384, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128,
                relative_attention_num_buckets=32, relative_attention_max_distance=128,
                layer_norm_eps=1e-6, feed_forward_proj="gated-gelu")
_TINY_CLIP = dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                  max_positions=32, hidden_act="quick_gelu", layer_norm_eps=1e-5, eos_token_id=1)
TINY_MODELS = {"tiny_t5": ("t5", _TINY_T5), "tiny_clip": ("clip", _TINY_CLIP)}


def _model_config(kind: str, preset: str) -> dict:
    if preset in TINY_MODELS:
        tiny_kind, arch = TINY_MODELS[preset]
        if tiny_kind != kind:
            raise ValueError(f"text preset {preset!r} is a {tiny_kind} model, not {kind}")
        return dict(arch)
    cfg = TEXT_ENCODER_KINDS.load(kind, "preset_config")(preset).to_dict()
    keys = architecture_keys(kind)
    return {k: cfg[k] for k in keys}  # the architecture only (no preset name, no decoder)


def architecture_keys(kind: str) -> tuple[str, ...]:
    """The keys of a `kind` encoder's `model` dict (those of its tiny model)."""
    return tuple(next(arch for k, arch in TINY_MODELS.values() if k == kind))


def encoder_spec(kind: str, preset: str, *, max_length: int, input: str = "prompt",
                 tokenizer: str = "bytes", checkpoint: str = "",
                 dropout: float = 0.0) -> ml_collections.ConfigDict:
    model = _model_config(kind, preset)
    return ml_collections.ConfigDict(dict(
        kind=kind, preset=preset, model=model, max_length=max_length, input=input,
        tokenizer=tokenizer, checkpoint=checkpoint, dropout=dropout))


def tiny_encoders() -> dict:
    """The quickstart's three encoders (random, frozen): the UL2-like and CLIP-like ones read
    the prompt as words of the Shapes vocabulary (the stand-in for a subword tokenizer; captions
    are at most 19 words with the FPS tag), the ByT5-like one reads the quoted text as bytes."""
    return {
        "ul2": encoder_spec("t5", "tiny_t5", max_length=24, tokenizer="shapes_words"),
        "metaclip": encoder_spec("clip", "tiny_clip", max_length=24,
                                 tokenizer="shapes_words"),
        "byt5": encoder_spec("t5", "tiny_t5", max_length=8, input="visual_text"),
    }


def moviegen_encoders() -> dict:
    """Movie Gen's encoders: UL2 and long-prompt MetaCLIP over the prompt, ByT5 over its quoted
    text. Lengths follow mindone's caches (UL2 300, ByT5 100) and the paper (MetaCLIP 256);
    ByT5-small is the 1472-wide model mindone assumes. Point each `checkpoint` at the converted
    weights (`mgen convert`) or the transformers folder; tokenizers come from the folders."""
    return {
        "ul2": encoder_spec("t5", "ul2", max_length=300, tokenizer=""),
        "metaclip": encoder_spec("clip", "metaclip-h14-long", max_length=256, tokenizer=""),
        "byt5": encoder_spec("t5", "byt5-small", max_length=100, input="visual_text"),
    }


def text_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        encoders=tiny_encoders(),
        fps_tag=False,      # prepend "FPS-<data.fps>" to the prompt (Movie Gen's FPS conditioning)
        init_seed=1234,     # random init of encoders without a checkpoint
        precompute=False,   # encode captions once (mgen data precompute-text) and train on the cache
    ))


def encoder_names(text_cfg) -> tuple[str, ...]:
    """The concatenation order."""
    return tuple(sorted(text_cfg.encoders.keys()))


def output_dim(spec) -> int:
    return int(spec.model[TEXT_ENCODER_KINDS.entry(spec.kind).meta["width_key"]])


def text_shapes(text_cfg) -> dict[str, tuple[int, int]]:
    """{encoder name: (max_length, output dim)}."""
    return {name: (int(text_cfg.encoders[name].max_length), output_dim(text_cfg.encoders[name]))
            for name in encoder_names(text_cfg)}


def total_text_tokens(text_cfg) -> int:
    return sum(length for length, _ in text_shapes(text_cfg).values())


def text_fingerprint(cfg) -> dict:
    """What determines an experiment's text embeddings: the encoders, their inputs and the FPS
    tag (cached embeddings and latents are rebuilt when it changes)."""
    return {"text": cfg.text.to_dict(), "fps": float(cfg.data.fps) if cfg.text.fps_tag else None}
