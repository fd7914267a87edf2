"""A word-level tokenizer over the Shapes vocabulary, for the quickstart's tiny text encoders.

Real UL2 / MetaCLIP tokenizers are subword vocabularies that cannot be downloaded here; reading
Shapes captions byte by byte instead makes the prompts ~50-90 tokens where a subword tokenizer
gives ~12, and the DiT's cross-attention pays for every one. This builds the equivalent of a
subword tokenizer for this closed vocabulary: every word the captions, the evaluation prompts,
the FPS tag and the camera labels can use is a token, except that directional suffixes are
pieces of their own ("upwards" -> up ##wards, as a subword vocabulary splits it), so "up" in an
evaluation prompt is the token that every upward caption trains. (With whole words, "up" alone
appeared in a quarter of the upward captions and the quickstart generated vertical motion at
chance.) It is a transformers fast tokenizer (a `tokenizers` WordPiece model) with T5's
conventions: <pad> 0, </s> 1 appended, <unk> 2."""
import functools
import re

from data_pipelines import shapes

SPECIALS = ("<pad>", "</s>", "<unk>")
SUFFIXES = ("ward", "wards")  # leftward(s), rightward(s), upward(s), downward(s)
_EXTRA_WORDS = ("fps", "camera", "a", "the", "of", "on", "in", "and", "is", "that", "with",
                "moving", "going", "shape", "video", "static", "zoom", "pan", "tilt", "dolly",
                "out", "left", "right", "up", "down")


def shapes_vocabulary() -> list[str]:
    words = set(_EXTRA_WORDS) | set(shapes.COLOURS)
    texts = list(shapes._TEMPLATES) + list(shapes._VERBS)
    texts += [p for ps in shapes.SHAPE_SYNONYMS.values() for p in ps]
    texts += [p for ps in shapes.DIRECTION_PHRASES.values() for p in ps]
    texts += list(shapes._SHAPE_WORDS) + list(shapes._DIRECTION_WORDS)
    for text in texts:
        words |= set(re.findall(r"[a-z]+", text.replace("{c}", "").replace("{s}", "")
                                .replace("{v}", "").replace("{d}", "")))
    stems = ("left", "right", "up", "down")
    words -= {stem + suffix for stem in stems for suffix in SUFFIXES}
    digits_and_punct = [str(i) for i in range(10)] + list(".,-:!?'\"")
    return (list(SPECIALS) + sorted(words) + ["##" + suffix for suffix in SUFFIXES]
            + digits_and_punct)


@functools.lru_cache(maxsize=None)
def shapes_word_tokenizer():
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(shapes_vocabulary())}
    tok = Tokenizer(WordPiece(vocab, unk_token="<unk>", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.Lowercase()
    # Words, and each digit / punctuation mark on its own ("FPS-8." -> fps - 8 .).
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(),
                                                 pre_tokenizers.Digits(individual_digits=True)])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
