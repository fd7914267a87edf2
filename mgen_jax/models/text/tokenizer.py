"""Tokenizers for the text encoders (transformers' own implementations, loaded locally)."""
import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def byt5_tokenizer():
    # ByT5's tokenizer is the UTF-8 bytes plus specials: it needs no vocabulary file.
    from transformers import ByT5Tokenizer
    return ByT5Tokenizer()


def tokenize_bytes(texts, max_length: int) -> dict:
    """Pad/truncate to max_length; returns int32 `ids` and `mask` [N, max_length]."""
    out = byt5_tokenizer()(list(texts), padding="max_length", truncation=True,
                           max_length=max_length, return_tensors="np")
    return {"ids": out["input_ids"].astype(np.int32), "mask": out["attention_mask"].astype(np.int32)}
