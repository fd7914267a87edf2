"""T5 encoder: relative-position buckets and padding behaviour."""
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgen_jax.configs.text import text_config
from mgen_jax.models.text.t5_encoder import T5Encoder, relative_position_bucket
from mgen_jax.models.text.tokenizer import tokenize_bytes


def _reference_bucket(rel, num_buckets=32, max_distance=128):
    """Straight-line transcription of T5's bidirectional bucketing, one integer at a time."""
    num_buckets //= 2
    bucket = num_buckets if rel > 0 else 0
    n = abs(rel)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact))
    return bucket + min(large, num_buckets - 1)


def test_relative_position_bucket_matches_reference():
    rel = np.arange(-300, 301)
    ours = np.asarray(relative_position_bucket(jnp.asarray(rel), num_buckets=32, max_distance=128))
    np.testing.assert_array_equal(ours, [_reference_bucket(int(r)) for r in rel])


@pytest.mark.slow  # ~20 s; the T5 parity tests stay in the default run
def test_padding_does_not_change_real_tokens():
    cfg = text_config().encoders.ul2.model
    enc = T5Encoder(cfg, rngs=nnx.Rngs(0))
    short = tokenize_bytes(["a red circle"], 13)
    long = tokenize_bytes(["a red circle"], 29)
    n = int(short["mask"].sum())
    out_short = enc(jnp.asarray(short["ids"]), jnp.asarray(short["mask"]))
    out_long = enc(jnp.asarray(long["ids"]), jnp.asarray(long["mask"]))
    np.testing.assert_allclose(out_short[0, :n], out_long[0, :n], rtol=1e-5, atol=1e-5)
    other = enc(*map(jnp.asarray, tokenize_bytes(["a blue circle"], 13).values()))
    assert float(jnp.max(jnp.abs(other[0, :n] - out_short[0, :n]))) > 1e-2
