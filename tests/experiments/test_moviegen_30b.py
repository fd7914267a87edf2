"""experiments/moviegen_30b.py: the paper's three pre-training stages and SFT load and validate,
with the paper's token counts, position tables, learning rates and schedules and a mesh that fills
the stage's slice."""
import math

import pytest

from data_pipelines.build.build_config import load_build_config
from mgen_jax.configs.data_build import PAPER_ASPECTS
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.mesh import MESH_AXES
from mgen_jax.configs.text import text_shapes
from mgen_jax.configs.validation import ConfigError
from mgen_jax.models.builders import build_dit
from mgen_jax.models.dit.flops import token_grid

SPEC = "experiments/moviegen_30b.py"
# stage: (tokens per sample, position tables, lr, chips of the stage's topology)
EXPECTED = {
    "t2i_256": (16 * 16, (1, 16, 16), 1e-4, 256),
    "t2iv_256": (32 * 16 * 16, (32, 32, 32), 6e-5, 256),
    "t2iv_768": (32 * 48 * 48, (32, 96, 96), 6e-5, 256),
    "sft": (32 * 48 * 48, (32, 96, 96), 1e-5, 256),
}
# The paper: one LR per pre-training stage, stepped down at plateaus at 768 px; cosine in SFT.
SCHEDULES = {"t2i_256": "constant", "t2iv_256": "constant", "t2iv_768": "plateau", "sft": "cosine"}


@pytest.mark.parametrize("stage", sorted(EXPECTED))
def test_stage_loads_and_validates(stage):
    cfg = load_config(f"{SPEC}:{stage}")
    tokens, tables, lr, chips = EXPECTED[stage]
    assert math.prod(token_grid(cfg)) == tokens
    assert tuple(cfg.dit.max_positions) == tables
    assert cfg.dit_optimizer.lr == lr
    assert cfg.dit_optimizer.schedule == SCHEDULES[stage]
    assert cfg.dit_train.validate_every > 0 and cfg.dit_train.validation_clips >= (
        cfg.dit_train.batch_size)
    remat = "save_splash_residuals" if stage in ("t2iv_768", "sft") else "full"
    assert (cfg.dit.size, cfg.dit.remat, cfg.dit.attention) == ("30b", remat, "splash")
    assert (cfg.param_dtype, cfg.compute_dtype) == ("float32", "bfloat16")
    assert cfg.tae.z_channels == 16
    # Movie Gen's three encoders: UL2 (4096 wide), long-prompt MetaCLIP (1024, 256 tokens) and
    # ByT5-small (1472) over the quoted text, 656 tokens in all, trained from cached embeddings.
    assert text_shapes(cfg.text) == {"byt5": (100, 1472), "metaclip": (256, 1024),
                                     "ul2": (300, 4096)}
    assert cfg.text.encoders.byt5.input == "visual_text" and cfg.text.precompute
    assert math.prod(cfg.mesh[a] for a in MESH_AXES) == chips
    batch_shards = cfg.mesh.data * cfg.mesh.fsdp
    assert cfg.dit_train.batch_size % batch_shards == 0


def test_768_stage_is_one_sample_per_8_chips_with_the_papers_tp_and_cp():
    cfg = load_config(f"{SPEC}:t2iv_768")
    assert cfg.dit_train.batch_size == 32 and (cfg.data.height, cfg.data.frames) == (768, 256)
    assert cfg.mesh.tensor == 4 and cfg.mesh.context <= 2
    # 256 chips, one sample per 8: the batch is split over data x fsdp (one sample per shard)
    # and each sample over the context x tensor group of 8 chips.
    assert math.prod(cfg.mesh[a] for a in MESH_AXES) == 8 * cfg.dit_train.batch_size
    assert (cfg.mesh.data * cfg.mesh.fsdp, cfg.mesh.context * cfg.mesh.tensor) == (
        cfg.dit_train.batch_size, 8)


def test_768_stage_steps_down_on_the_validation_loss_and_sft_is_the_curated_videos():
    cfg = load_config(f"{SPEC}:t2iv_768")
    o = cfg.dit_optimizer
    assert (o.plateau_on, o.plateau_factor) == ("validation_loss", 0.5)
    assert o.lr * o.plateau_min_scale == pytest.approx(1e-5)  # 6e-5 -> 1e-5
    sft = load_config(f"{SPEC}:sft")
    assert sft.data.dir == "data/moviegen_sft" and dict(sft.data.mixture)["images"] == 0
    assert sft.dit_optimizer.end_lr_fraction == 0.1
    build = load_build_config("experiments/data_sft.py")
    assert {(b["frames"], b["fps"], b["height"], b["width"]) for b in build.buckets} == {
        (256, fps, h, w) for fps in (16.0, 24.0) for h, w in PAPER_ASPECTS}
    # The buckets are the stage's shapes: 256 frames at 768 x 768 is one of them.
    assert (sft.data.frames, sft.data.height) == (256, 768)


def test_unknown_stage_is_rejected():
    with pytest.raises(ValueError, match="t2iv_768"):
        load_config(f"{SPEC}:t2v_1080")
    with pytest.raises(ConfigError, match="dit.max_positions"):
        load_config(f"{SPEC}:t2i_256", ["data.frames=256"])  # no temporal table for images


def test_30b_parameter_count():
    n = build_dit(load_config(f"{SPEC}:t2iv_768")).num_params()
    print(f"moviegen_30b DiT parameters: {n:,}")
    assert 28.5e9 <= n <= 31.5e9, n


@pytest.mark.parametrize("mesh", [("mesh.fsdp=8", "mesh.context=1", "mesh.tensor=1"),
                                  ("mesh.fsdp=2", "mesh.context=1", "mesh.tensor=4")])
def test_30b_fsdp_presets_replicate_at_most_2_percent(mesh):
    """Abstract shardings of the real 30B parameters on 8 CPU devices (nothing allocated)."""
    import jax

    from mgen_jax.parallel.logical_rules import rules_from_preset
    from mgen_jax.parallel.mesh import build_mesh
    from mgen_jax.parallel.replication import replicated_fraction
    cfg = load_config(f"{SPEC}:t2iv_768", list(mesh))
    dit = build_dit(cfg)
    shardings = dit.shardings(build_mesh(cfg.mesh, jax.devices()[:8]), rules_from_preset(cfg.mesh.rules))
    fraction = replicated_fraction(shardings, dit.abstract_params())
    assert 0 < fraction <= 0.02, fraction  # > 0: norms and small tables are replicated
