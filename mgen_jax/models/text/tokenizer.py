"""Tokenizers for the text encoders: transformers' own implementations, loaded from local files.

    tok = load_tokenizer("bytes")               # ByT5: UTF-8 bytes, no files needed
    tok = load_tokenizer("shapes_words")        # the Shapes dataset's word-level vocabulary
    tok = load_tokenizer("path/to/ul2")         # T5 SentencePiece / tokenizer.json, CLIP BPE, ...
    batch = tokenize(tok, ["a cat"], 64)        # {"ids", "mask"}: int32 [N, 64]

Using transformers' tokenizers (not a re-implementation) is what makes our token ids those the
published encoders were trained on. Nothing is fetched from the hub: a directory must hold the
tokenizer files itself.
"""
import functools
import importlib.util
import os

import numpy as np

from mgen_jax.models.text.shapes_tokenizer import shapes_word_tokenizer

BYTES = "bytes"
# The synthetic Shapes data's own word-level tokenizer (models/text/shapes_tokenizer.py): the
# quickstart's stand-in for a subword vocabulary, built in code, no files.
SHAPES_WORDS = "shapes_words"
# Any one of these marks a directory as holding a transformers tokenizer (tokenizer.json of a
# fast tokenizer, tokenizer_config.json written by save_pretrained, SentencePiece models, CLIP's
# BPE vocab.json + merges.txt).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model",
                   "sentencepiece.bpe.model", "vocab.json")


@functools.lru_cache(maxsize=None)
def byt5_tokenizer():
    # ByT5's tokenizer is the UTF-8 bytes plus specials: it needs no vocabulary file.
    from transformers import ByT5Tokenizer
    return ByT5Tokenizer()


def has_tokenizer_files(directory: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, name)) for name in TOKENIZER_FILES)


def load_tokenizer(spec: str):
    """A transformers tokenizer: "bytes" for ByT5's byte tokenizer, or a local directory with
    tokenizer files (loaded with AutoTokenizer, never from the hub)."""
    if spec == BYTES:
        return byt5_tokenizer()
    if spec == SHAPES_WORDS:
        return shapes_word_tokenizer()
    if not os.path.isdir(spec):
        raise ValueError(f"tokenizer {spec!r}: expected {BYTES!r}, {SHAPES_WORDS!r} or a directory "
                         "with tokenizer files")
    if not has_tokenizer_files(spec):
        raise FileNotFoundError(f"no tokenizer files in {spec} (expected one of "
                                f"{', '.join(TOKENIZER_FILES)}); found {sorted(os.listdir(spec))}")
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(spec, local_files_only=True)
    except Exception as err:  # transformers' errors do not always say which folder failed
        hint = ""
        if _only_sentencepiece(spec) and importlib.util.find_spec("sentencepiece") is None:
            hint = (" (the folder has a SentencePiece model but no tokenizer.json: reading it "
                    "needs the sentencepiece package)")
        raise ValueError(f"could not load the tokenizer in {spec}{hint}: {err}") from err


def _only_sentencepiece(directory: str) -> bool:
    """T5-family folders (google/ul2, t5-base) may ship spiece.model without tokenizer.json."""
    return (os.path.isfile(os.path.join(directory, "spiece.model"))
            and not os.path.isfile(os.path.join(directory, "tokenizer.json")))


def tokenize(tokenizer, texts, max_length: int) -> dict:
    """Pad/truncate to max_length (special tokens such as T5's </s> or CLIP's end-of-text are
    kept inside the limit, as transformers does); returns int32 `ids` and `mask`
    [N, max_length]."""
    if isinstance(texts, str):
        raise TypeError("tokenize: texts must be a list of strings, not one string")
    out = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="np")
    return {"ids": out["input_ids"].astype(np.int32),
            "mask": out["attention_mask"].astype(np.int32)}


def tokenize_bytes(texts, max_length: int) -> dict:
    """tokenize() with ByT5's byte tokenizer."""
    return tokenize(byt5_tokenizer(), texts, max_length)
