"""`mgen text-embed` on random-weight transformers checkpoints saved with their tokenizer files
writes transformers' own `last_hidden_state[0]` (UL2-style T5, ByT5 with and without tokenizer
files, 256-position CLIP), and refuses a checkpoint of the wrong kind with a clear error."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.cli import main  # noqa: E402
from tests.torch_reference import perturbed  # noqa: E402

T5_PIECES = ["▁a", "▁cat", "▁the", "▁red", "▁sat", "s", "a", "t", "c", "e", "r", "d", "h", "."]
CLIP_MERGES = [("c", "a"), ("ca", "t</w>"), ("t", "h"), ("th", "e</w>"), ("r", "e"),
               ("re", "d</w>")]
SMALL = dict(d_model=40, d_kv=12, num_heads=5, d_ff=72, num_layers=2)


def _t5_folder(path, **config):
    """A tiny UL2-style (gated-SiLU) T5EncoderModel + a Unigram T5 tokenizer.json."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(piece, -1.0 - i) for i, piece in enumerate(T5_PIECES)]
    tokenizer = transformers.T5Tokenizer(vocab=vocab, extra_ids=2)
    hf = transformers.T5EncoderModel(transformers.T5Config(**{**SMALL, "vocab_size": 23,
                                                              **config}))
    perturbed(hf, 1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return hf, tokenizer


def _byt5_folder(path, with_tokenizer):
    hf = transformers.T5EncoderModel(transformers.T5Config(
        **SMALL, vocab_size=384, feed_forward_proj="gated-gelu", tokenizer_class="ByT5Tokenizer"))
    perturbed(hf, 2).save_pretrained(path)
    if with_tokenizer:
        transformers.ByT5Tokenizer().save_pretrained(path)
    return hf, transformers.ByT5Tokenizer()


def _clip_folder(path):
    """A tiny CLIPTextModel with Movie Gen's 256 positions + CLIP BPE tokenizer files."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz,.!":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    for a, b in CLIP_MERGES:
        vocab[a + b] = len(vocab)
    tokenizer = transformers.CLIPTokenizer(vocab=vocab, merges=CLIP_MERGES)
    hf = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(vocab) + 3, hidden_size=40, num_attention_heads=5, num_hidden_layers=2,
        intermediate_size=72, max_position_embeddings=256, hidden_act="gelu", bos_token_id=0,
        eos_token_id=1, pad_token_id=1))
    perturbed(hf, 3).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return hf, tokenizer


def _embed(capsys, encoder, folder, prompt, out, *extra):
    main(["text-embed", f"--encoder={encoder}", f"--checkpoint={folder}", f"--prompt={prompt}",
          f"--out={out}", *extra])
    summary = capsys.readouterr().out
    ours = np.load(out)
    assert ours.dtype == np.float32
    assert f"[{ours.shape[0]}, {ours.shape[1]}] float32" in summary and "params" in summary
    return ours, summary


def _reference(hf, tokenizer, prompt, **tokenize):
    inputs = tokenizer(prompt, return_tensors="pt", **tokenize)
    with torch.no_grad():
        hidden = hf(input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"]).last_hidden_state[0].numpy()
    return hidden, inputs["input_ids"][0].numpy()


def _assert_close(capsys, ours, ref, label):
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    err = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    with capsys.disabled():  # shown with -s, not swallowed by the next summary check
        print(f"text-embed {label}: [{ref.shape[0]}, {ref.shape[1]}] max rel error {err:.2e}")
    assert err <= 1e-5


def test_ul2_style_t5(tmp_path, capsys):
    folder = str(tmp_path / "ul2")
    hf, tokenizer = _t5_folder(folder, feed_forward_proj="gated-silu")
    prompt = "The red cat sat, the cats sat. A red hat!"  # unknown pieces too
    ours, summary = _embed(capsys, "ul2", folder, prompt, tmp_path / "ul2.npy")
    ref, ids = _reference(hf, tokenizer, prompt)
    assert ids[-1] == tokenizer.eos_token_id and 2 in ids  # </s> and <unk> both present
    _assert_close(capsys, ours, ref, "ul2-style (gated-silu)")
    n_params = sum(p.numel() for p in hf.parameters())
    assert f"encoder=ul2 ({n_params:,} params)" in summary

    ours, _ = _embed(capsys, "ul2", folder, prompt, tmp_path / "cut.npy", "--max-length=5")
    ref, ids = _reference(hf, tokenizer, prompt, truncation=True, max_length=5)
    assert len(ids) == 5 and ids[-1] == tokenizer.eos_token_id
    _assert_close(capsys, ours, ref, "ul2-style truncated at 5")


def test_original_t5_relu(tmp_path, capsys):
    folder = str(tmp_path / "t5")
    hf, tokenizer = _t5_folder(folder, feed_forward_proj="relu")
    prompt = "a red cat"
    ours, _ = _embed(capsys, "t5", folder, prompt, tmp_path / "t5.npy")
    _assert_close(capsys, ours, _reference(hf, tokenizer, prompt)[0], "t5 (relu)")


@pytest.mark.parametrize("with_tokenizer", [True, False])
def test_byt5(tmp_path, capsys, with_tokenizer):
    folder = str(tmp_path / "byt5")
    hf, tokenizer = _byt5_folder(folder, with_tokenizer)
    prompt = 'OPEN 24/7 — café "☕"'
    ours, summary = _embed(capsys, "byt5", folder, prompt, tmp_path / "byt5.npy")
    assert ("tokenizer=bytes" in summary) == (not with_tokenizer)
    ref, ids = _reference(hf, tokenizer, prompt)
    assert len(ids) == len(prompt.encode("utf-8")) + 1
    _assert_close(capsys, ours, ref, f"byt5 ({'tokenizer files' if with_tokenizer else 'bytes'})")


def test_metaclip_256_positions(tmp_path, capsys):
    folder = str(tmp_path / "clip")
    hf, tokenizer = _clip_folder(folder)
    short = "The red cat sat."
    ours, _ = _embed(capsys, "metaclip", folder, short, tmp_path / "short.npy")
    _assert_close(capsys, ours, _reference(hf, tokenizer, short)[0], "metaclip short")

    long = "the red cat sat, " * 60  # 300 tokens: truncated at the 256 positions
    ours, _ = _embed(capsys, "metaclip", folder, long, tmp_path / "long.npy")
    ref, ids = _reference(hf, tokenizer, long, truncation=True, max_length=256)
    assert len(ids) == 256 and ids[-1] == 1  # end-of-text kept
    _assert_close(capsys, ours, ref, "metaclip truncated at 256")


def test_wrong_kind_and_bad_arguments_are_named(tmp_path, capsys):
    t5, clip, byt5, small = (str(tmp_path / name) for name in ("t5", "clip", "byt5", "small"))
    _t5_folder(t5, feed_forward_proj="gated-gelu")
    _clip_folder(clip)
    _byt5_folder(byt5, with_tokenizer=False)
    _t5_folder(small, feed_forward_proj="gated-gelu", vocab_size=5)  # "a cat" -> [4, 5, 1]
    os.remove(os.path.join(small, "model.safetensors"))  # every check runs before the weights
    out = str(tmp_path / "x.npy")
    cases = [
        ("metaclip", t5, [], r"--encoder=metaclip expects a CLIP checkpoint.*T5 model "
                             r"\(model_type='t5'\); use --encoder=byt5 or t5 or ul2"),
        ("ul2", clip, [], r"expects a T5 checkpoint.*model_type='clip_text_model'"
                          r".*use --encoder=metaclip"),
        ("ul2", byt5, [], r"ByT5 checkpoint.*use --encoder=byt5"),
        ("byt5", t5, [], r"tokenizer in .*t5 is a T5Tokenizer, not a ByT5Tokenizer"),
        ("metaclip", clip, ["--max-length=300"], r"max_length=300 exceeds.*256 positions"),
        ("t5", small, [], r"token id 5 .*outside the encoder's vocab_size=5"),
    ]
    for encoder, folder, extra, match in cases:
        with pytest.raises(SystemExit, match=match):
            main(["text-embed", f"--encoder={encoder}", f"--checkpoint={folder}",
                  "--prompt=a cat", f"--out={out}", *extra])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(os.path.join(t5, name))
    with pytest.raises(SystemExit, match=f"no tokenizer files in {t5}"):
        main(["text-embed", "--encoder=t5", f"--checkpoint={t5}", "--prompt=a cat",
              f"--out={out}"])
    assert not os.path.exists(out)
