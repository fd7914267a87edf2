"""load_tokenizer / tokenize: T5 (Unigram tokenizer.json), CLIP (BPE vocab.json + merges.txt)
and ByT5 tokenizers built locally and loaded back from their files give transformers' own ids,
padded and truncated to max_length with the end token kept."""
import importlib.util
import json

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from mgen_jax.models.text.tokenizer import (load_tokenizer, tokenize,  # noqa: E402
                                            tokenize_bytes)

TEXTS = ["A red cat sat.", "the cat", "", "The red cat, the red cat sat!"]
T5_PIECES = ["▁a", "▁cat", "▁the", "▁red", "▁sat", "s", "a", "t", "c", "e", "r", "d", "h", "."]
CLIP_MERGES = [("c", "a"), ("ca", "t</w>"), ("t", "h"), ("th", "e</w>"), ("r", "e"),
               ("re", "d</w>")]


def _t5_tokenizer():
    """A tiny SentencePiece-style Unigram T5 tokenizer (ids: pad 0, </s> 1, unk 2)."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(piece, -1.0 - i) for i, piece in enumerate(T5_PIECES)]
    return transformers.T5Tokenizer(vocab=vocab, extra_ids=2)


def _clip_vocab():
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,.!":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    for a, b in CLIP_MERGES:
        vocab[a + b] = len(vocab)
    return vocab


def _reference(tok, texts, max_length):
    out = tok(texts, padding="max_length", truncation=True, max_length=max_length)
    return np.asarray(out["input_ids"]), np.asarray(out["attention_mask"])


def _assert_same(ours, tok, texts, max_length):
    ids, mask = _reference(tok, texts, max_length)
    assert ours["ids"].dtype == ours["mask"].dtype == np.int32
    assert ours["ids"].shape == ours["mask"].shape == (len(texts), max_length)
    np.testing.assert_array_equal(ours["ids"], ids)
    np.testing.assert_array_equal(ours["mask"], mask)


def test_t5_tokenizer_json(tmp_path):
    original = _t5_tokenizer()
    original.save_pretrained(tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    tok = load_tokenizer(str(tmp_path))
    for max_length in (4, 9):
        _assert_same(tokenize(tok, TEXTS, max_length), original, TEXTS, max_length)
    out = tokenize(tok, ["a red cat sat", "the cats"], 4)
    # truncated inside the limit with </s> kept; "cats" is ▁cat + s; padding is id 0, mask 0
    np.testing.assert_array_equal(out["ids"], [[4, 7, 5, 1], [6, 5, 9, 1]])
    out = tokenize(tok, ["a cat"], 5)
    np.testing.assert_array_equal(out["ids"], [[4, 5, 1, 0, 0]])
    np.testing.assert_array_equal(out["mask"], [[1, 1, 1, 0, 0]])


def test_clip_vocab_and_merges(tmp_path):
    vocab = _clip_vocab()
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in CLIP_MERGES))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77}))
    tok = load_tokenizer(str(tmp_path))
    original = transformers.CLIPTokenizer(vocab=vocab, merges=CLIP_MERGES)
    for max_length in (5, 12):
        _assert_same(tokenize(tok, TEXTS, max_length), original, TEXTS, max_length)
    out = tokenize(tok, ["The red cat sat", "cat"], 5)
    bos, eot = 0, 1
    cat, the, red = vocab["cat</w>"], vocab["the</w>"], vocab["red</w>"]
    # lower-cased; truncated with end-of-text kept last; padded with end-of-text, mask 0
    np.testing.assert_array_equal(out["ids"], [[bos, the, red, cat, eot],
                                               [bos, cat, eot, eot, eot]])
    np.testing.assert_array_equal(out["mask"], [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_byt5_files_and_builtin_bytes(tmp_path):
    transformers.ByT5Tokenizer().save_pretrained(tmp_path)
    from_dir, builtin = load_tokenizer(str(tmp_path)), load_tokenizer("bytes")
    assert type(from_dir).__name__ == "ByT5Tokenizer"
    texts = TEXTS + ["café ☕"]
    _assert_same(tokenize(from_dir, texts, 16), builtin, texts, 16)
    np.testing.assert_array_equal(tokenize_bytes(texts, 16)["ids"],
                                  tokenize(builtin, texts, 16)["ids"])
    out = tokenize(builtin, ["hi", "é"], 5)  # bytes + 3, </s> = 1, pad = 0; é is 2 bytes
    np.testing.assert_array_equal(out["ids"], [[107, 108, 1, 0, 0], [0xC3 + 3, 0xA9 + 3, 1, 0, 0]])


def test_errors_name_the_problem(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"no tokenizer files in {tmp_path}.*config.json"):
        load_tokenizer(str(tmp_path))
    with pytest.raises(ValueError, match="'/no/such/dir'"):
        load_tokenizer("/no/such/dir")
    spm = tmp_path / "spm"  # a T5 folder with only a (here corrupt) SentencePiece model
    spm.mkdir()
    (spm / "spiece.model").write_bytes(b"not a sentencepiece model")
    (spm / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))
    with pytest.raises(ValueError, match=f"could not load the tokenizer in {spm}") as err:
        load_tokenizer(str(spm))
    no_sentencepiece = importlib.util.find_spec("sentencepiece") is None
    assert ("needs the sentencepiece package" in str(err.value)) == no_sentencepiece
    with pytest.raises(TypeError, match="list of strings"):
        tokenize(load_tokenizer("bytes"), "one string", 8)


def test_sentencepiece_only_t5_folder_tokenizes_as_sentencepiece(tmp_path):
    """Published T5 / UL2 folders may ship only spiece.model: loaded through sentencepiece, the
    ids are sentencepiece's own pieces followed by </s>."""
    import json

    import sentencepiece as spm
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["a red circle moving left", "the quick brown fox jumps",
                                 "a sign reading open", "blue square going up fast"] * 50))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "spiece"),
                                   vocab_size=30, model_type="unigram", pad_id=0, eos_id=1,
                                   unk_id=2, bos_id=-1, minloglevel=2)
    folder = tmp_path / "t5"
    folder.mkdir()
    (folder / "spiece.model").write_bytes((tmp_path / "spiece.model").read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "t5"}))
    texts = ["a red fox", "blue circle going left"]
    out = tokenize(load_tokenizer(str(folder)), texts, 40)
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "spiece.model"))
    for row, mask, text in zip(out["ids"], out["mask"], texts):
        expected = sp.encode(text) + [1]
        assert list(row[:len(expected)]) == expected and mask.sum() == len(expected)
        assert (row[len(expected):] == 0).all()
