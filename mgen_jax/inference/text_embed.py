"""`mgen text-embed`: one prompt through a frozen text encoder loaded from a transformers-format
checkpoint folder, giving the final hidden states [tokens, dim] in float32: the tensor
transformers returns as `last_hidden_state[0]` for the same folder and prompt.

    emb = embed_prompt("ul2", "ckpt/ul2", 'A sign that says "OPEN"')
    emb.hidden.shape        # (tokens, 4096)

The folder holds config.json, the weights and the tokenizer files. The prompt is tokenized as
transformers does for a single prompt: no padding; T5-family encoders (relative positions, no
length limit) are truncated only at max_length; CLIP is truncated at its position table (or
max_length if shorter), its end-of-text token kept. A ByT5 folder without tokenizer files uses
the built-in byte tokenizer (ByT5's vocabulary is the bytes; nothing to load). Prompt
formatting (FPS tag, visual text) is the caller's: the text given is the text encoded.
"""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from mgen_jax.checkpointing.text_encoder_checkpoint import (ENCODER_FAMILIES,
                                                           check_encoder_folder,
                                                           load_text_encoder_folder,
                                                           text_encoder_model)
from mgen_jax.checkpointing.transformers_folder import load_transformers_config
from mgen_jax.configs.registries import TEXT_ENCODER_KINDS
from mgen_jax.models.text.tokenizer import BYTES, has_tokenizer_files, load_tokenizer

# --encoder -> architecture family is ENCODER_FAMILIES (checkpointing/text_encoder_checkpoint.py):
# ul2 and t5 differ only in name, both load any T5-family encoder (UL2's gated-SiLU, T5 v1.1's
# gated-GELU, the original T5's ReLU).
BYT5_TOKENIZER = "ByT5Tokenizer"


@dataclasses.dataclass(frozen=True)
class TextEmbedding:
    hidden: np.ndarray      # [tokens, dim] float32
    ids: np.ndarray         # [tokens] int32, the token ids encoded
    encoder: str
    num_params: int
    tokenizer: str          # where the tokenizer came from (folder or "bytes")


def encoder_tokenizer(encoder: str, path: str):
    """(tokenizer, its spec): the folder's own tokenizer; ByT5 falls back to the bytes."""
    if encoder == "byt5" and not has_tokenizer_files(path):
        return load_tokenizer(BYTES), BYTES
    tokenizer = load_tokenizer(path)
    name = type(tokenizer).__name__
    if encoder == "byt5" and name != BYT5_TOKENIZER:
        raise ValueError(f"--encoder=byt5: the tokenizer in {path} is a {name}, not a "
                         f"{BYT5_TOKENIZER}")
    if encoder != "byt5" and name == BYT5_TOKENIZER:
        raise ValueError(f"--encoder={encoder}: the tokenizer in {path} is a {BYT5_TOKENIZER}; "
                         "use --encoder=byt5")
    return tokenizer, path


def tokenize_prompt(tokenizer, prompt: str, max_length: int | None) -> np.ndarray:
    """[tokens] int32 ids of one prompt, unpadded, truncated at max_length when given (special
    tokens kept inside it)."""
    out = tokenizer(prompt, truncation=max_length is not None, max_length=max_length)
    return np.asarray(out["input_ids"], np.int32)


def architecture(encoder: str, config: dict):
    """Our config for a checkpoint's config.json, without reading any weights."""
    return TEXT_ENCODER_KINDS.load(ENCODER_FAMILIES[encoder], "config_from_transformers")(config)


def _load_model(encoder: str, path: str):
    """(PureModel, params, forward: (module, ids, mask) -> hidden states [B, L, D])."""
    family = ENCODER_FAMILIES[encoder]
    cfg, params = load_text_encoder_folder(encoder, path)
    model = text_encoder_model(family, cfg)
    if TEXT_ENCODER_KINDS.entry(family).meta["pooled_output"]:
        return model, params, lambda module, ids, mask: module(ids, mask)[0]
    return model, params, lambda module, ids, mask: module(ids, mask)


def embed_prompt(encoder: str, checkpoint: str, prompt: str, *,
                 max_length: int | None = None) -> TextEmbedding:
    """The final hidden states of `prompt` under the checkpoint in folder `checkpoint`. Every
    check (encoder kind, tokenizer, lengths, token ids) runs before a weight is read."""
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length}: must be at least 1")
    config = load_transformers_config(checkpoint)
    check_encoder_folder(encoder, config, checkpoint)
    cfg = architecture(encoder, config)
    tokenizer, tokenizer_spec = encoder_tokenizer(encoder, checkpoint)

    limit = max_length
    if ENCODER_FAMILIES[encoder] == "clip":
        if max_length is not None and max_length > cfg.max_positions:
            raise ValueError(f"max_length={max_length} exceeds the CLIP text tower's "
                             f"{cfg.max_positions} positions ({checkpoint}/config.json)")
        limit = max_length or cfg.max_positions
    ids = tokenize_prompt(tokenizer, prompt, limit)
    if ids.size == 0:
        raise ValueError(f"prompt {prompt!r} gives no tokens with the tokenizer of "
                         f"{tokenizer_spec}")
    if ids.max() >= cfg.vocab_size:  # a gather would clamp silently instead of failing
        raise ValueError(f"token id {int(ids.max())} from the tokenizer of {tokenizer_spec} is "
                         f"outside the encoder's vocab_size={cfg.vocab_size} "
                         f"({checkpoint}/config.json): tokenizer and weights do not belong "
                         "together")

    model, params, forward = _load_model(encoder, checkpoint)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)  # float32 compute
    run = jax.jit(lambda p, i, m: forward(model.bind(p), i, m))
    hidden = run(params, jnp.asarray(ids[None]), jnp.ones((1, ids.size), jnp.int32))[0]
    return TextEmbedding(hidden=np.asarray(hidden, np.float32), ids=ids, encoder=encoder,
                         num_params=model.num_params(), tokenizer=tokenizer_spec)


def write_text_embedding(encoder: str, checkpoint: str, prompt: str, out: str, *,
                         max_length: int | None = None) -> str:
    """Embed `prompt` and save the [tokens, dim] float32 array to `out` (.npy); returns the
    one-line summary."""
    emb = embed_prompt(encoder, checkpoint, prompt, max_length=max_length)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "wb") as f:  # np.save(path) would append .npy to other names
        np.save(f, emb.hidden)
    tokens, dim = emb.hidden.shape
    return (f"wrote {out}: [{tokens}, {dim}] float32 last hidden states, encoder={encoder} "
            f"({emb.num_params:,} params), tokenizer={emb.tokenizer}")
