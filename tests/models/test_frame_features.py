"""Per-frame visual features for the audio DiT (models/vision/clip_vision.py frame_features)."""
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mgen_jax.configs.vision import clip_vision_config
from mgen_jax.models.vision.clip_vision import (CLIPVisionTransformer, frame_embeddings,
                                                frame_features, preprocess_frames,
                                                video_feature_dim)


def _tower(**overrides):
    cfg = clip_vision_config("tiny")
    cfg.update(image_size=14, patch_size=5, **overrides)  # 2 x 2 patches, 4 pixels dropped
    return cfg, CLIPVisionTransformer(cfg, rngs=nnx.Rngs(3))


def test_patch_tokens_are_each_frames_last_hidden_patches():
    cfg, tower = _tower(features="patch_tokens")
    frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 3, 9, 11, 3)), jnp.uint8)
    got = frame_features(tower, frames, "patch_tokens")
    assert got.shape == (2, 3, video_feature_dim(cfg)) == (2, 3, 4 * cfg.hidden_size)
    pixels = preprocess_frames(frames[1, 2], 14, cfg.image_mean, cfg.image_std)
    want = tower(pixels[None]).last_hidden_state[0, 1:].reshape(-1)
    np.testing.assert_allclose(got[1, 2], want, rtol=1e-5, atol=1e-6)


def test_image_embeds_are_frame_embeddings():
    cfg, tower = _tower()
    frames = jnp.asarray(np.random.default_rng(1).integers(0, 256, (1, 2, 14, 14, 3)), jnp.uint8)
    got = frame_features(tower, frames, "image_embeds")
    assert got.shape[-1] == video_feature_dim(cfg) == cfg.projection_dim
    np.testing.assert_allclose(got, frame_embeddings(tower, frames), rtol=1e-5, atol=1e-6)


def test_bad_feature_kind_is_named():
    cfg, tower = _tower()
    with pytest.raises(ValueError, match="'pooled'"):
        frame_features(tower, jnp.zeros((1, 1, 14, 14, 3), jnp.uint8), "pooled")
    cfg.features = "pooled"
    with pytest.raises(ValueError, match="vision.features='pooled'"):
        CLIPVisionTransformer(cfg, rngs=nnx.Rngs(0))
