"""The quickstart's word-piece tokenizer covers every Shapes caption and evaluation prompt, and
directional words share their stem's token (what the DiT needs to generalise to "moving up")."""
import re

import numpy as np

from data_pipelines import shapes
from mgen_jax.models.text.shapes_tokenizer import SUFFIXES, WORDS, shapes_vocabulary
from mgen_jax.models.text.tokenizer import load_tokenizer, tokenize


def _pieces(tok, text):
    return tok.convert_ids_to_tokens(tok(text).input_ids)


def test_captions_and_prompts_tokenize_without_unknowns_and_directions_share_stems():
    tok = load_tokenizer("shapes_words")
    rng = np.random.default_rng(0)
    texts = [shapes.caption(c, s, d, rng) for c, s, d in shapes.all_combos() for _ in range(20)]
    texts += [shapes.canonical_caption(*combo) for combo in shapes.held_out_combos()]
    out = tokenize(tok, ["FPS-8. " + t for t in texts], 24)
    assert not (out["ids"] == 2).any()                 # no <unk>
    assert (out["mask"].sum(1) < 24).all()             # nothing truncated at the quickstart's 24
    assert _pieces(tok, "FPS-8. a ball drifting upwards") == [
        "fps", "-", "8", ".", "a", "ball", "drifting", "up", "##wards", "</s>"]
    for stem in ("left", "right", "up", "down"):
        for word in (stem + "ward", stem + "wards"):
            assert _pieces(tok, word)[0] == stem
    assert _pieces(tok, "a sign")[1] == "<unk>"
    vocab = shapes_vocabulary()
    assert vocab[:3] == ["<pad>", "</s>", "<unk>"] and len(set(vocab)) == len(vocab)


def _caption_words() -> set[str]:
    """Every word the Shapes caption grammar can emit (templates, verbs, synonyms, phrases)."""
    texts = list(shapes._TEMPLATES) + list(shapes._VERBS) + list(shapes.COLOURS)
    texts += [p for ps in shapes.SHAPE_SYNONYMS.values() for p in ps]
    texts += [p for ps in shapes.DIRECTION_PHRASES.values() for p in ps]
    texts += list(shapes._SHAPE_WORDS) + list(shapes._DIRECTION_WORDS)
    words = set()
    for text in texts:
        words |= set(re.findall(r"[a-z]+", re.sub(r"\{[a-z]\}", "", text)))
    return words


def test_fixed_vocabulary_covers_the_caption_grammar_and_is_sorted():
    """The vocabulary is frozen (token ids must not move); the data generator may only use its
    words: a new caption word fails here, naming it."""
    stems = {w[:-len(s)] for w in _caption_words() for s in SUFFIXES if w.endswith(s)}
    whole = {w for w in _caption_words()
             if not any(w.endswith(s) and w[:-len(s)] in ("left", "right", "up", "down")
                        for s in SUFFIXES)}
    missing = sorted((whole | (stems & {"left", "right", "up", "down"})) - set(WORDS))
    assert not missing, f"Shapes caption words missing from the tokenizer vocabulary: {missing}"
    assert list(WORDS) == sorted(WORDS)
