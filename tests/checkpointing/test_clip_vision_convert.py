"""CLIP vision converter: both key spellings, the saved position_ids buffer, loud errors naming
every bad key before a tensor is read, streaming into shardings, and config conversion
(CLIPVisionConfig, full CLIPConfig, preprocessor mean / std)."""
import re

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mgen_jax.checkpointing.clip_vision_convert import (  # noqa: E402
    clip_vision_config_from_transformers, load_clip_vision)
from mgen_jax.checkpointing.lazy_state_dict import LazyStateDict  # noqa: E402
from mgen_jax.checkpointing.transformers_folder import load_transformers_state_dict  # noqa: E402
from mgen_jax.configs.mesh import MESH_AXES  # noqa: E402
from mgen_jax.configs.vision import CLIP_IMAGE_MEAN  # noqa: E402
from mgen_jax.models.pure_model import PureModel  # noqa: E402
from mgen_jax.models.vision.clip_vision import CLIPVisionTransformer  # noqa: E402
from mgen_jax.parallel.logical_rules import rules_from_preset  # noqa: E402
from tests.torch_reference import perturbed, write_variant  # noqa: E402

# CLIP's PIL image processor (transformers 5 names it CLIPImageProcessorPil; in 4.x it is
# CLIPImageProcessor itself).
_pil_processor = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)

TINY = dict(hidden_size=40, intermediate_size=72, num_hidden_layers=2, num_attention_heads=5,
            image_size=35, patch_size=7, projection_dim=23, hidden_act="quick_gelu")


@pytest.fixture(scope="module")
def orig(tmp_path_factory):
    """tmp/orig: a CLIPVisionModelWithProjection folder, and its state dict."""
    tmp = tmp_path_factory.mktemp("vision")
    hf = perturbed(transformers.CLIPVisionModelWithProjection(
        transformers.CLIPVisionConfig(**TINY)), 1)
    hf.save_pretrained(tmp / "orig")
    return tmp, load_transformers_state_dict(str(tmp / "orig"))


def _variant(orig, name, state):
    tmp, _ = orig
    return write_variant(tmp, name, state) if not (tmp / name).exists() else str(tmp / name)


def _same(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_both_key_spellings_and_saved_buffer_load_the_same(orig):
    tmp, state = orig
    _, reference = load_clip_vision(str(tmp / "orig"))
    # transformers 5 saves a bare CLIPVisionModel without `vision_model.`; earlier versions (and
    # every WithProjection / CLIPModel) with it. Old versions also saved position_ids.
    bare = {k.removeprefix("vision_model."): v for k, v in state.items()}
    cfg, params = load_clip_vision(_variant(orig, "bare", bare))
    assert cfg.projection_dim == 23
    _same(params, reference)
    buffered = dict(state, **{"vision_model.embeddings.position_ids":
                              np.arange(26, dtype=np.int64)[None]})
    _same(load_clip_vision(_variant(orig, "buffered", buffered))[1], reference)
    # Without the projection weight the config has none, and the tower alone loads.
    tower = {k: v for k, v in state.items() if k != "visual_projection.weight"}
    cfg, params = load_clip_vision(_variant(orig, "tower", tower))
    assert cfg.projection_dim == 0 and "visual_projection" not in params
    _same(params["layers"], reference["layers"])


def _count_reads(monkeypatch):
    reads = []
    original = LazyStateDict.read
    monkeypatch.setattr(LazyStateDict, "read",
                        lambda self, key: reads.append(key) or original(self, key))
    return reads


@pytest.mark.parametrize("case,pattern", [
    ("extra", r"no place in the CLIP vision tower: vision_model\.encoder\.layers\.2\.mlp\.fc1"
              r"\.weight"),
    ("text_key", r"no place in the CLIP vision tower: text_model\.final_layer_norm\.weight"),
    ("missing", r"does not fill: vision_model\.encoder\.layers\.1\.layer_norm2\.bias "
                r"\(our layers\.1\.layer_norm2\.bias"),
    ("missing_patch", r"does not fill: vision_model\.embeddings\.patch_embedding\.weight "
                      r"\(our patch_embedding, shape \(7, 7, 3, 40\)\)"),
    ("patch_shape", r"vision_model\.embeddings\.patch_embedding\.weight \(torch Conv2d "
                    r"\[out, in, kh, kw\]\) has shape \(40, 3, 7, 6\), the model expects "
                    r"\(40, 3, 7, 7\)"),
    ("projection_shape", r"shape mismatches: visual_projection\.weight"),
    ("duplicate", r"both with and without 'vision_model\.': "
                  r"(vision_model\.)?post_layernorm\.bias / (vision_model\.)?post_layernorm"),
])
def test_bad_checkpoints_fail_naming_the_key_before_reading(orig, monkeypatch, case, pattern):
    _, state = orig
    patch = "vision_model.embeddings.patch_embedding.weight"
    variants = {
        "extra": dict(state, **{"vision_model.encoder.layers.2.mlp.fc1.weight":
                                np.zeros((72, 40), np.float32)}),
        # Text keys are skipped only for a full CLIPModel (its config has vision_config).
        "text_key": dict(state, **{"text_model.final_layer_norm.weight": np.ones(3, np.float32)}),
        "missing": {k: v for k, v in state.items()
                    if k != "vision_model.encoder.layers.1.layer_norm2.bias"},
        "missing_patch": {k: v for k, v in state.items() if k != patch},
        "patch_shape": dict(state, **{patch: np.zeros((40, 3, 7, 6), np.float32)}),
        "projection_shape": dict(state, **{"visual_projection.weight":
                                           np.zeros((23, 41), np.float32)}),
        "duplicate": dict(state, **{"post_layernorm.bias": np.zeros(40, np.float32)}),
    }
    folder = _variant(orig, case, variants[case])
    reads = _count_reads(monkeypatch)
    with pytest.raises(ValueError, match=pattern):
        load_clip_vision(folder)
    assert reads == []
    load_clip_vision(str(orig[0] / "orig"))  # the counter does see a good checkpoint's reads
    assert sorted(set(reads)) == sorted(state)


def test_streams_into_shardings(orig):
    tmp, _ = orig
    mesh = Mesh(np.asarray(jax.devices()).reshape(1, 4, 1, 2), MESH_AXES)
    cfg, params = load_clip_vision(str(tmp / "orig"), mesh=mesh, rules="default")
    _, reference = load_clip_vision(str(tmp / "orig"))
    assert params["patch_embedding"].sharding.spec == P(None, None, None, "fsdp")
    assert params["position_embedding"].sharding.spec == P(None, "fsdp")
    assert params["layers"][0]["mlp"]["fc1"]["kernel"].sharding.spec == P("fsdp", "tensor")
    assert params["visual_projection"]["kernel"].sharding.spec == P("fsdp", None)
    expected = PureModel.create(lambda rngs: CLIPVisionTransformer(cfg, rngs=rngs)).shardings(
        mesh, rules_from_preset("default"))
    flat = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    for path, sharding in jax.tree_util.tree_flatten_with_path(expected)[0]:
        assert flat[path].sharding == sharding, jax.tree_util.keystr(path)
    _same(params, reference)


def test_config_from_vision_full_and_preprocessor(tmp_path):
    vision = transformers.CLIPVisionConfig(**TINY).to_dict()
    full = transformers.CLIPConfig(vision_config=vision, projection_dim=29).to_dict()
    a = clip_vision_config_from_transformers(vision)
    b = clip_vision_config_from_transformers(full)
    assert (a.projection_dim, b.projection_dim) == (23, 29)  # CLIPModel's is top-level
    assert {k: v for k, v in a.items() if k != "projection_dim"} == \
           {k: v for k, v in b.items() if k != "projection_dim"}
    assert (a.hidden_size, a.num_heads, a.num_layers, a.patch_size) == (40, 5, 2, 7)
    assert clip_vision_config_from_transformers(vision, with_projection=False).projection_dim == 0
    defaults = clip_vision_config_from_transformers({})
    assert (defaults.patch_size, defaults.image_size, defaults.hidden_act) == (32, 224,
                                                                               "quick_gelu")
    assert defaults.image_mean == CLIP_IMAGE_MEAN
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        clip_vision_config_from_transformers(dict(vision, hidden_act="relu"))
    with pytest.raises(ValueError, match=re.escape("model_type='clip_text_model'")):
        clip_vision_config_from_transformers(dict(vision, model_type="clip_text_model"))

    # A processor saved beside the model supplies its own pixel statistics.
    hf = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**TINY))
    hf.save_pretrained(tmp_path)
    _pil_processor(image_mean=[0.5, 0.25, 0.125],
                                       image_std=[0.2, 0.3, 0.4]).save_pretrained(tmp_path)
    cfg, _ = load_clip_vision(str(tmp_path))
    assert cfg.image_mean == (0.5, 0.25, 0.125) and cfg.image_std == (0.2, 0.3, 0.4)
