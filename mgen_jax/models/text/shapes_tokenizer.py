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
conventions: <pad> 0, </s> 1 appended, <unk> 2.

The vocabulary is a fixed list, like the vocabulary file shipped with a real encoder: token ids
must not move when the data generator changes. tests/models/test_shapes_tokenizer.py checks that
it covers every word the Shapes captions (data_pipelines/shapes.py) and evaluation prompts use."""
import functools

SPECIALS = ("<pad>", "</s>", "<unk>")
SUFFIXES = ("ward", "wards")  # leftward(s), rightward(s), upward(s), downward(s) -> stem ##suffix
# Every whole word of the Shapes captions, prompts, FPS tag and camera labels, sorted; the
# directional words appear as their stems ("upwards" is up ##wards).
WORDS = (
    'a', 'across', 'and', 'background', 'ball', 'black', 'block', 'blue', 'bottom', 'box',
    'camera', 'circle', 'circles', 'climbing', 'cyan', 'dark', 'disc', 'disk', 'dolly', 'dot',
    'down', 'drifting', 'dropping', 'falling', 'falls', 'fps', 'gliding', 'going', 'green',
    'heading', 'in', 'is', 'keeps', 'left', 'magenta', 'moving', 'of', 'on', 'one', 'out',
    'pan', 'red', 'right', 'rises', 'rising', 'round', 'shape', 'single', 'sinking', 'sliding',
    'small', 'square', 'squares', 'static', 'steadily', 'that', 'the', 'tilt', 'to', 'top',
    'towards', 'travelling', 'triangle', 'triangles', 'triangular', 'up', 'video', 'wedge',
    'with', 'yellow', 'zoom',
)
DIGITS_AND_PUNCTUATION = tuple(str(i) for i in range(10)) + tuple(".,-:!?'\"")


def shapes_vocabulary() -> list[str]:
    """Token strings in id order: specials, words, suffix pieces, digits and punctuation."""
    return (list(SPECIALS) + list(WORDS) + ["##" + suffix for suffix in SUFFIXES]
            + list(DIGITS_AND_PUNCTUATION))


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
