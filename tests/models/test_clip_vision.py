"""CLIP / MetaCLIP vision tower: exact agreement with transformers' CLIPVisionModel(WithProjection)
through the converter users run, per-frame video embeddings (resizing and CLIP normalisation
checked against transformers' CLIP image processor), and the MetaCLIP-H/14 preset's size."""
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.checkpointing.clip_vision_convert import load_clip_vision  # noqa: E402
from mgen_jax.configs.vision import clip_vision_config  # noqa: E402
from mgen_jax.models.pure_model import PureModel  # noqa: E402
from mgen_jax.models.vision.clip_vision import (CLIPVisionTransformer,  # noqa: E402
                                                frame_embeddings, preprocess_frames)
from tests.torch_reference import perturbed  # noqa: E402

# CLIP's PIL image processor (transformers 5 names it CLIPImageProcessorPil; in 4.x it is
# CLIPImageProcessor itself).
_pil_processor = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)

# Odd sizes: 5 heads of 8, MLP 72, projection 23.
TINY = dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=5,
            projection_dim=23, layer_norm_eps=1e-5)


def _vision_config(hidden_act="quick_gelu", image_size=35, patch_size=7):
    return transformers.CLIPVisionConfig(**TINY, hidden_act=hidden_act, image_size=image_size,
                                         patch_size=patch_size)


def _model(cfg, params):
    return PureModel.create(lambda rngs: CLIPVisionTransformer(cfg, rngs=rngs)).bind(params)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def _reference(hf, pixels_nhwc):
    with torch.no_grad():
        return hf(pixel_values=torch.from_numpy(np.ascontiguousarray(
            pixels_nhwc.transpose(0, 3, 1, 2))))


def _smooth_frames(shape, seed=0):
    """uint8 frames [..., H, W, 3] with smooth content (what resizing is meant for)."""
    rng = np.random.default_rng(seed)
    *lead, h, w = shape
    phase = rng.uniform(0, 6, (*lead, 1, 1, 3))
    y, x = np.mgrid[:h, :w]
    wave = np.sin(0.21 * x[..., None] + 0.17 * y[..., None] * np.arange(1, 4) + phase)
    return (128 + 100 * wave).round().astype(np.uint8)


@pytest.mark.parametrize("cls,hidden_act,image_size,shard", [
    # 5 x 5 patches of 7 px, one safetensors file.
    ("CLIPVisionModelWithProjection", "quick_gelu", 35, None),
    # 30 px: the strided conv drops 2 trailing pixels per side; sharded safetensors + index.
    ("CLIPVisionModel", "gelu", 30, "20KB"),
])
def test_matches_transformers_clip_vision(tmp_path, cls, hidden_act, image_size, shard):
    config = _vision_config(hidden_act, image_size)
    hf = perturbed(getattr(transformers, cls)(config), 1)
    hf.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    if shard:
        assert (tmp_path / "model.safetensors.index.json").is_file()
    cfg, params = load_clip_vision(str(tmp_path))
    with_projection = cls == "CLIPVisionModelWithProjection"
    assert cfg.projection_dim == (23 if with_projection else 0)
    assert (cfg.hidden_act, cfg.image_size, cfg.patch_size) == (hidden_act, image_size, 7)
    model = _model(cfg, params)
    assert (PureModel.create(lambda rngs: CLIPVisionTransformer(cfg, rngs=rngs)).num_params()
            == sum(p.numel() for p in hf.parameters()))

    pixels = np.random.default_rng(0).normal(size=(3, image_size, image_size, 3))
    pixels = pixels.astype(np.float32)
    ref = _reference(hf, pixels)
    tower = hf.vision_model if with_projection else hf
    with torch.no_grad():  # the pooled output, which WithProjection does not return
        ref_pooled = tower(pixel_values=torch.from_numpy(
            np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))).pooler_output.numpy()
    out = model(jnp.asarray(pixels))
    errors = {"last_hidden_state": _rel(out.last_hidden_state, ref.last_hidden_state.numpy()),
              "pooled": _rel(out.pooled, ref_pooled)}
    if with_projection:
        errors["image_embeds"] = _rel(out.image_embeds, ref.image_embeds.numpy())
    else:
        assert out.image_embeds is None
    print(f"{cls} {hidden_act} {image_size}px: max rel error "
          + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert max(errors.values()) <= 1e-5


def test_full_clip_model_vision_tower_and_projection(tmp_path):
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=24, intermediate_size=37,
                         num_hidden_layers=1, num_attention_heads=3, bos_token_id=0,
                         eos_token_id=2, pad_token_id=1),
        vision_config=dict(_vision_config().to_dict(), projection_dim=512),
        projection_dim=29)  # CLIPModel's visual projection uses the top-level projection_dim
    hf = perturbed(transformers.CLIPModel(config), 2)
    hf.save_pretrained(tmp_path)
    cfg, params = load_clip_vision(str(tmp_path))
    assert cfg.projection_dim == 29
    pixels = np.random.default_rng(1).normal(size=(2, 35, 35, 3)).astype(np.float32)
    with torch.no_grad():  # CLIPModel's image features: the projected pooled output
        pooled = hf.vision_model(pixel_values=torch.from_numpy(
            np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))).pooler_output
        ref = hf.visual_projection(pooled).numpy()
    err = _rel(_model(cfg, params)(jnp.asarray(pixels)).image_embeds, ref)
    print(f"full CLIPModel: image features max rel error {err:.2e}")
    assert err <= 1e-5


@pytest.fixture(scope="module")
def tiny_with_projection(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_vision")
    hf = perturbed(transformers.CLIPVisionModelWithProjection(_vision_config()), 3)
    hf.save_pretrained(folder)
    cfg, params = load_clip_vision(str(folder))
    return hf, cfg, _model(cfg, params)


def test_frame_embeddings_per_frame_match_transformers(tiny_with_projection):
    hf, cfg, model = tiny_with_projection
    frames = _smooth_frames((2, 3, 50, 61))  # B=2 videos of T=3 frames, not square, not 35
    emb = np.asarray(frame_embeddings(model, jnp.asarray(frames)))
    assert emb.shape == (2, 3, 23)
    # Every frame is embedded on its own: the tower on that frame alone, preprocessed.
    pixels = np.asarray(preprocess_frames(jnp.asarray(frames), 35, cfg.image_mean,
                                          cfg.image_std))
    ref = _reference(hf, pixels.reshape(6, 35, 35, 3)).image_embeds.numpy().reshape(2, 3, 23)
    err = _rel(emb, ref)
    print(f"frame_embeddings vs transformers on the same pixels: max rel error {err:.2e}")
    assert err <= 1e-5
    assert np.abs(emb[0, 0] - emb[1, 2]).max() > 1e-3  # frames differ, so do their embeddings


def test_frames_at_image_size_match_clip_processor_end_to_end(tiny_with_projection):
    """No resizing needed: uint8 frames -> CLIP's own processor (rescale + normalise) ->
    transformers equals frame_embeddings."""
    hf, cfg, model = tiny_with_projection
    frames = _smooth_frames((1, 4, 35, 35), seed=1)
    processor = _pil_processor(do_resize=False, do_center_crop=False)
    pixels = processor(images=list(frames[0]), return_tensors="np")["pixel_values"]
    with torch.no_grad():
        ref = hf(pixel_values=torch.from_numpy(pixels)).image_embeds.numpy()
    err = _rel(frame_embeddings(model, jnp.asarray(frames))[0], ref)
    print(f"frame_embeddings vs CLIP processor + transformers: max rel error {err:.2e}")
    assert err <= 1e-5


@pytest.mark.parametrize("size", [(50, 61), (20, 27), (140, 105)])
def test_resize_is_clip_processors_bicubic(size):
    """Resizing the whole frame to image_size x image_size agrees with CLIP's PIL processor set
    to the same square size (bicubic, antialiased) up to its uint8 rounding: within about one
    8-bit level on smooth frames and on average on noise, where bilinear would be far off."""
    processor = _pil_processor(size={"height": 35, "width": 35},
                                                   do_center_crop=False)
    cfg = clip_vision_config("tiny")
    std = np.asarray(cfg.image_std)
    noise = np.random.default_rng(2).integers(0, 256, (*size, 3), dtype=np.uint8)
    for frame, max_levels, mean_levels in ((_smooth_frames(size), 1.5, 0.5), (noise, None, 0.5)):
        ref = processor(images=[frame], return_tensors="np")["pixel_values"][0]
        ours = np.asarray(preprocess_frames(jnp.asarray(frame), 35, cfg.image_mean,
                                            cfg.image_std))
        levels = np.abs(ours - ref.transpose(1, 2, 0)) * std * 255  # in 8-bit levels
        print(f"{size}: max {levels.max():.2f}, mean {levels.mean():.2f} levels")
        assert levels.mean() <= mean_levels
        if max_levels is not None:
            assert levels.max() <= max_levels


def test_frame_embeddings_needs_a_projection(tmp_path):
    hf = transformers.CLIPVisionModel(_vision_config())
    hf.save_pretrained(tmp_path)
    cfg, params = load_clip_vision(str(tmp_path))
    with pytest.raises(ValueError, match="visual projection"):
        frame_embeddings(_model(cfg, params), jnp.zeros((1, 2, 35, 35, 3), jnp.uint8))
    with pytest.raises(ValueError, match="images are 34x35"):
        _model(cfg, params)(jnp.zeros((1, 34, 35, 3)))


def test_metaclip_h14_builds_abstractly_with_transformers_size():
    cfg = clip_vision_config("metaclip_h14")
    ours = PureModel.create(lambda rngs: CLIPVisionTransformer(cfg, rngs=rngs)).num_params()
    config = transformers.CLIPVisionConfig(
        hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
        image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
    with torch.device("meta"):  # shapes only, no memory
        reference = sum(p.numel() for p in
                        transformers.CLIPVisionModelWithProjection(config).parameters())
    print(f"metaclip_h14 vision tower: {ours:,} parameters")
    assert ours == reference
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size,
            cfg.patch_size, cfg.image_size, cfg.projection_dim) == (32, 1280, 16, 5120, 14, 224,
                                                                    1024)
    with pytest.raises(ValueError, match="unknown"):
        clip_vision_config("vit-h")
