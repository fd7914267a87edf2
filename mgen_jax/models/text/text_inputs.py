"""Prompts -> each encoder's token ids, as Movie Gen feeds them.

The prompt is formatted once (the FPS tag when cfg.text.fps_tag, see prompts.format_prompt);
encoders with input='prompt' read it whole, those with input='visual_text' (ByT5) read only its
quoted text. Batches carry the tokens as flat fields `ids.<encoder>` / `mask.<encoder>` (and
cached embeddings as `text.<encoder>` / `text_mask.<encoder>`), so Grain's stacking and the
batch shardings stay flat."""
import functools

import numpy as np

from mgen_jax.configs.text import encoder_names
from mgen_jax.models.text.prompts import format_prompt, visual_text
from mgen_jax.models.text.tokenizer import load_tokenizer, tokenize


@functools.lru_cache(maxsize=None)
def _load(source: str):
    return load_tokenizer(source)


def encoder_tokenizer(name: str, spec):
    """The tokenizer of one encoder: spec.tokenizer, else its checkpoint folder's files."""
    source = spec.tokenizer or spec.checkpoint
    if not source:
        raise ValueError(f"text.encoders.{name}: no tokenizer (set text.encoders.{name}.tokenizer "
                         "to 'bytes' or a local tokenizer directory, or .checkpoint to a "
                         "transformers folder with tokenizer files)")
    return _load(source)


def per_prompt_fps(fps, count: int) -> list:
    """fps: one rate for every prompt, or one per prompt (clips of a built dataset keep their own
    frame rate, so each prompt's FPS tag is its clip's)."""
    if fps is None or np.ndim(fps) == 0:
        return [fps] * count
    fps = list(np.asarray(fps).tolist())
    if len(fps) != count:
        raise ValueError(f"{len(fps)} fps values for {count} prompts")
    return fps


def encoder_inputs(text_cfg, prompts, *, fps=None) -> dict[str, list[str]]:
    """{encoder name: the strings that encoder reads} for a list of prompts; fps: one rate or one
    per prompt (see per_prompt_fps)."""
    # The empty prompt stays empty (no FPS tag): it is the classifier-free-guidance null.
    rates = per_prompt_fps(fps, len(prompts))
    formatted = [format_prompt(p, fps=r if text_cfg.fps_tag else None) if p else ""
                 for p, r in zip(prompts, rates)]
    return {name: ([visual_text(p) for p in prompts]
                   if text_cfg.encoders[name].input == "visual_text" else formatted)
            for name in encoder_names(text_cfg)}


def tokenize_prompts(text_cfg, prompts, *, fps=None) -> dict[str, dict]:
    """{encoder name: {"ids": int32 [N, L], "mask": int32 [N, L]}}; fps as in encoder_inputs."""
    out = {}
    for name, texts in encoder_inputs(text_cfg, list(prompts), fps=fps).items():
        spec = text_cfg.encoders[name]
        out[name] = tokenize(encoder_tokenizer(name, spec), texts, spec.max_length)
    return out


def token_fields(tokens: dict[str, dict]) -> dict[str, np.ndarray]:
    """{name: {ids, mask}} -> flat {"ids.<name>": ..., "mask.<name>": ...}."""
    return {f"{field}.{name}": t[field] for name, t in tokens.items() for field in ("ids", "mask")}


def split_fields(batch: dict, prefix: str) -> dict:
    """{"<prefix>.<name>": x} -> {name: x}."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in batch.items() if k.startswith(head)}


def cached_text_example(text_cfg, batch_size: int, dtype=np.float32, seed: int = 0) -> dict:
    """A batch's cached-embedding fields (`text.<name>`, `text_mask.<name>`) filled with noise and
    a partly padded mask, for benchmarks and ahead-of-time plans."""
    from mgen_jax.configs.text import text_shapes
    rng, out = np.random.default_rng(seed), {}
    for name, (length, dim) in text_shapes(text_cfg).items():
        out[f"text.{name}"] = rng.normal(size=(batch_size, length, dim)).astype(dtype)
        out[f"text_mask.{name}"] = np.arange(length)[None].repeat(batch_size, 0) < max(1, length - 7)
    return out


def placeholder_nulls(text_cfg, dtype=np.float32) -> tuple[dict, dict]:
    """Null embeddings of the right shapes (zeros, one valid token) where no encoder has run:
    benchmarks and plans, whose cost does not depend on the values."""
    from mgen_jax.configs.text import text_shapes
    shapes = text_shapes(text_cfg)
    return ({n: np.zeros((length, dim), dtype) for n, (length, dim) in shapes.items()},
            {n: np.arange(length) == 0 for n, (length, _) in shapes.items()})
