"""Masked audio prediction: each task's masks have the right shape and layout, tasks and context
lengths follow the config, and the loss counts the target frames only."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mgen_jax.configs.audio_dit import audio_masking_config
from mgen_jax.flow.audio_masks import TASKS, masked_audio_flow_loss, sample_context_masks
from mgen_jax.flow.path import sample_logit_normal

SIGMA = 1e-5
FRAMES = 37


def _runs(row: np.ndarray) -> list:
    """Maximal runs of equal values: [(value, length), ...]."""
    edges = np.flatnonzero(np.diff(row)) + 1
    return [(int(r[0]), len(r)) for r in np.split(row, edges)]


@pytest.fixture(scope="module")
def masks():
    cfg = audio_masking_config()
    mask, task = jax.jit(lambda k: sample_context_masks(k, 4000, FRAMES, cfg))(jax.random.key(0))
    return cfg, np.asarray(mask), np.asarray(task)


def test_each_task_has_its_layout(masks):
    cfg, mask, task = masks
    assert mask.shape == (4000, FRAMES, 1) and mask.dtype == np.float32 and task.shape == (4000,)
    known = mask[..., 0].astype(int)
    assert set(np.unique(known)) <= {0, 1}
    for row, kind in zip(known, task):
        runs = _runs(row)
        if TASKS[kind] == "generation":
            assert runs == [(0, FRAMES)]
        elif TASKS[kind] == "extension":   # one known run at one end, one target run
            assert len(runs) == 2 and runs[0][0] != runs[1][0]
        else:                              # known, target, known
            assert [v for v, _ in runs] == [1, 0, 1]
    assert known.sum(1).max() <= FRAMES - 1  # something is always left to generate
    extension = known[task == TASKS.index("extension")]
    prefix = extension[:, 0] == 1
    assert 0.45 < prefix.mean() < 0.55     # extension runs both ways


def test_tasks_and_context_lengths_follow_the_config(masks):
    cfg, mask, task = masks
    share = np.bincount(task, minlength=3) / len(task)
    np.testing.assert_allclose(share, [cfg.generation, cfg.extension, cfg.infilling], atol=0.03)
    known = mask[task != 0, :, 0].sum(1) / FRAMES
    lo, hi = cfg.min_context, cfg.max_context
    assert known.min() >= lo - 1.0 / FRAMES and known.max() <= hi + 1.0 / FRAMES
    assert abs(known.mean() - (lo + hi) / 2) < 0.02  # uniform in [lo, hi]
    only_infill = dict(cfg, generation=0.0, extension=0.0, infilling=2.0)
    _, tasks = jax.jit(lambda k: sample_context_masks(k, 50, FRAMES, only_infill))(
        jax.random.key(1))
    assert set(np.asarray(tasks)) == {2}


def test_bad_masking_configs_are_refused():
    cfg = audio_masking_config()
    with pytest.raises(ValueError, match="probabilities"):
        sample_context_masks(jax.random.key(0), 4, FRAMES, dict(cfg, generation=-0.1))
    with pytest.raises(ValueError, match="min_context"):
        sample_context_masks(jax.random.key(0), 4, FRAMES, dict(cfg, min_context=0.8))
    with pytest.raises(ValueError, match=">= 3 latent frames"):
        sample_context_masks(jax.random.key(0), 4, 2, cfg)


def test_loss_counts_target_frames_only():
    b, t, c = 3, 11, 4
    x1 = jax.random.normal(jax.random.key(2), (b, t, c)) + 1.0
    mask = np.zeros((b, t, 1), np.float32)
    mask[0, :5], mask[1, :2], mask[1, -3:] = 1, 1, 1   # extension, infilling, generation
    key = jax.random.key(3)

    def velocity(context_error):
        def fn(x_t, t_, context, context_mask):
            # Reads the context it is given (its sum over frames, plus 0.1 per known frame),
            # and is far off on the known frames only.
            guess = (jnp.sum(context, 1, keepdims=True)
                     + 0.1 * jnp.sum(context_mask, 1, keepdims=True))
            return jnp.broadcast_to(guess, x_t.shape) + context_error * context_mask
        return fn

    @jax.jit
    def losses(x1, mask):
        good = masked_audio_flow_loss(velocity(0.0), x1, mask, key, sigma_min=SIGMA)
        bad = masked_audio_flow_loss(velocity(100.0), x1, mask, key, sigma_min=SIGMA)
        return good, bad[0]

    (loss, aux), worse = losses(x1, jnp.asarray(mask))
    np.testing.assert_allclose(worse, loss, rtol=1e-6)           # known frames do not count
    np.testing.assert_array_equal(aux["target_frames"], [6, 6, 11])
    # Reference: the same t and noise; the model is given the known frames' clean latents; the
    # mean squared error over each example's target frames, averaged over examples.
    k_t, k_noise = jax.random.split(key)
    x0, x1 = np.asarray(jax.random.normal(k_noise, x1.shape)), np.asarray(x1)
    guess = (x1 * mask).sum(1, keepdims=True) + 0.1 * mask.sum(1, keepdims=True)
    err = np.mean(np.square(guess - (x1 - (1 - SIGMA) * x0)), -1)
    target = 1 - mask[..., 0]
    np.testing.assert_allclose(loss, np.mean((err * target).sum(1) / target.sum(1)), rtol=1e-5)
    np.testing.assert_allclose(aux["t"], sample_logit_normal(k_t, (b,)), rtol=1e-6)


def test_padding_frames_neither_count_nor_serve_as_context():
    b, t, c = 2, 9, 3
    x1 = jax.random.normal(jax.random.key(4), (b, t, c))
    mask = jnp.zeros((b, t, 1)).at[:, :2].set(1.0).at[1, 7].set(1.0)  # frame 7 of 1 is padding
    valid = jnp.arange(t)[None] < jnp.array([[9], [6]])

    def velocity(x_t, t_, context, context_mask):
        # Huge on the padding frames; the count of known frames it is told about elsewhere.
        pad = jnp.where(jnp.arange(t)[None, :, None] >= 6, 1e3, 0.0)
        return pad + jnp.sum(context_mask, 1, keepdims=True) * jnp.ones_like(x_t)

    loss, aux = jax.jit(lambda x1, m, v: masked_audio_flow_loss(
        velocity, x1, m, jax.random.key(5), sigma_min=SIGMA, valid=v))(x1, mask, valid)
    np.testing.assert_array_equal(aux["target_frames"], [7, 4])
    assert float(aux["per_example_loss"][1]) < 100  # its padding frames (>= 6) are not counted
    assert float(aux["per_example_loss"][0]) > 1e5
    assert bool(jnp.isfinite(loss))
