"""Variable shapes: NaViT packing equals per-clip forwards; bucketed and packed batches compile
once per shape, not once per clip."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines.bucketing import assign_bucket, bucket_batches
from data_pipelines.packing import pack_clips, per_segment, unpack_clip
from mgen_jax.configs.loading import load_config
from mgen_jax.models.builders import build_dit
from mgen_jax.models.dit.transformer import DiffusionTransformer
from mgen_jax.training.dit_step import (make_dit_train_step_on_embeddings,
                                        make_packed_dit_train_step)
from mgen_jax.training.optimizer import make_optimizer
from mgen_jax.training.train_state import TrainState
from mgen_jax.configs.text import encoder_spec
from mgen_jax.parallel.logical_rules import unsharded
from tests.models.test_dit import TEXT_DIMS, _cfg, _randomize


@pytest.fixture(autouse=True)
def _unsharded():
    """These tests call the DiT directly, deliberately without sharding constraints."""
    with unsharded():
        yield

PATCH = (1, 2, 2)
GRIDS = [(2, 4, 6), (1, 6, 4), (3, 2, 2), (1, 2, 2)]  # latent shapes [T, H, W], mixed


def _clips(c=5, text_len=7, text_dim=11):
    rng = np.random.default_rng(0)
    latents = [rng.normal(size=(*g, c)).astype(np.float32) for g in GRIDS]
    texts = [rng.normal(size=(text_len, text_dim)).astype(np.float32) for _ in GRIDS]
    masks = [np.arange(text_len) < n for n in (7, 3, 5, 1)]
    ts = rng.uniform(size=len(GRIDS)).astype(np.float32)
    return latents, texts, masks, ts


def test_pack_unpack_round_trip_and_errors():
    latents, *_ = _clips()
    batch, placements = pack_clips(latents, PATCH, max_tokens=16, max_segments=3)
    assert batch["tokens"].shape[1] == 16 and len(batch["tokens"]) >= 2
    for p, latent in zip(placements, latents):
        np.testing.assert_array_equal(unpack_clip(batch["tokens"], p, PATCH, 5), latent)
    assert (batch["segments"] <= 3).all()
    with pytest.raises(ValueError, match="more than max_tokens"):
        pack_clips(latents, PATCH, max_tokens=8, max_segments=3)
    with pytest.raises(ValueError, match="only 1 allowed"):
        pack_clips(latents, PATCH, max_tokens=16, max_segments=3, rows=1)


@pytest.mark.slow  # compiles the packed and per-clip forwards
def test_packed_forward_equals_each_clip_alone():
    model = _randomize(DiffusionTransformer(_cfg(), latent_channels=5, text_dims=TEXT_DIMS, rngs=nnx.Rngs(0)))
    latents, texts, masks, ts = _clips()
    # Odd row length, 3 segments max: rows hold several clips and padding.
    batch, placements = pack_clips(latents, PATCH, max_tokens=19, max_segments=3)
    rows = len(batch["tokens"])
    text = per_segment(texts, placements, rows=rows, max_segments=3)
    mask = per_segment(masks, placements, rows=rows, max_segments=3, fill=False)
    t = per_segment(ts, placements, rows=rows, max_segments=3)
    packed = model.forward_packed(jnp.asarray(batch["tokens"]), jnp.asarray(batch["coords"]),
                                  jnp.asarray(batch["segments"]), jnp.asarray(t),
                                  {"ul2": jnp.asarray(text)}, {"ul2": jnp.asarray(mask)})
    assert not np.isnan(np.asarray(packed)).any()
    for p, latent, txt, m, ti in zip(placements, latents, texts, masks, ts):
        alone = model(latent[None], jnp.asarray([ti]), {"ul2": txt[None]}, {"ul2": m[None]})[0]
        np.testing.assert_allclose(unpack_clip(packed, p, PATCH, 5), alone, rtol=2e-5, atol=2e-5)


def _setup(text_len=6):
    cfg = load_config("experiments/quickstart.py:smoke",
                      ["dit.width=32", "dit.num_heads=4", "dit.mlp_dim=64", "dit.depth=2",
                       "dit.scan_unroll=1",
                       "dit.patch_size=(1, 2, 2)", "tae.z_channels=4"])
    cfg.text.encoders = {"ul2": encoder_spec("t5", "tiny_t5", max_length=text_len)}
    cfg.text.encoders.ul2.model.d_model = 8
    dit = build_dit(cfg)
    optimizer = make_optimizer(cfg.dit_optimizer, cfg.dit_train.steps)
    state = TrainState.create(dit.init(jax.random.key(0)), optimizer)
    null = dict(null_text={"ul2": np.zeros((text_len, 8), np.float32)},
                null_mask={"ul2": np.eye(text_len)[0] > 0})
    return cfg, dit, optimizer, state, null


@pytest.mark.slow  # compiles one train step per bucket
def test_bucketed_batches_compile_once_per_bucket():
    cfg, dit, optimizer, state, null = _setup()
    step = jax.jit(make_dit_train_step_on_embeddings(dit, optimizer, flow_cfg=cfg.flow,
                                                     latent_shift=0.0, latent_scale=1.0, **null))
    buckets = [(16, 16, 16), (16, 16, 32), (8, 32, 16)]   # (frames, height, width) latents here
    rng = np.random.default_rng(1)
    examples = []
    for f, h, w in [(20, 16, 15), (17, 15, 31), (9, 33, 15), (16, 17, 16), (16, 16, 33),
                    (12, 30, 17), (16, 16, 16), (30, 16, 32), (8, 32, 16)]:
        bucket = assign_bucket(f, h, w, buckets)
        examples.append({"latent_mean": rng.normal(size=(bucket[0] // 8, bucket[1] // 8,
                                                         bucket[2] // 8, 4)).astype(np.float32)})
    assert assign_bucket(20, 16, 15, buckets) == (16, 16, 16)
    assert assign_bucket(12, 30, 17, buckets) == (8, 32, 16)
    with pytest.raises(ValueError, match="shorter than every bucket"):
        assign_bucket(4, 16, 16, buckets)
    text = {"text.ul2": np.ones((3, 6, 8), np.float32), "text_mask.ul2": np.ones((3, 6), bool)}
    shapes = []
    for batch in bucket_batches(examples, 3, key="latent_mean"):
        batch.update(latent_logvar=np.zeros_like(batch["latent_mean"]), **text)
        state, metrics = step(state, batch, jax.random.key(len(shapes)))
        assert np.isfinite(float(metrics["loss"]))
        shapes.append(batch["latent_mean"].shape[1:4])
    assert len(shapes) == 3 and len(set(shapes)) == 3
    assert step._cache_size() == 3


@pytest.mark.slow  # compiles a packed train step
def test_packed_step_compiles_once_for_any_mix_of_clip_shapes():
    cfg, dit, optimizer, state, null = _setup()
    step = jax.jit(make_packed_dit_train_step(dit, optimizer, flow_cfg=cfg.flow, latent_shift=0.0,
                                              latent_scale=1.0, **null))
    rng = np.random.default_rng(2)
    losses = []
    for i in range(6):
        grids = [GRIDS[j] for j in rng.permutation(len(GRIDS))[: 2 + i % 3]]
        latents = [np.full((*g, 4), 0.5, np.float32) for g in grids]
        batch, placements = pack_clips(latents, PATCH, max_tokens=24, max_segments=3, rows=2)
        texts = per_segment([np.ones((6, 8), np.float32)] * len(grids), placements, rows=2,
                            max_segments=3)
        masks = per_segment([np.ones(6, bool)] * len(grids), placements, rows=2, max_segments=3,
                            fill=False)
        state, metrics = step(state, {**batch, "text.ul2": texts, "text_mask.ul2": masks},
                              jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert step._cache_size() == 1
    assert all(np.isfinite(losses))
