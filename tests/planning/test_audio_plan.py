"""`mgen plan` for Movie Gen Audio (planning/audio_plan.py): the paper experiment's batch and
analytic FLOPs, and the audio DiT's train step compiled ahead of time for a small TPU topology
(libtpu describes v5p:2x2x1 on this CPU machine), its memory and parameter fields checked
against the model."""
import copy

import pytest

from mgen_jax.configs.audio_dit import audio_dit_config
from mgen_jax.configs.dac_vae import dac_vae_config
from mgen_jax.configs.loading import apply_override, import_python_file
from mgen_jax.configs.mesh import mesh_config
from mgen_jax.configs.text import encoder_spec
from mgen_jax.configs.vision import clip_vision_config
from mgen_jax.models.audio.audio_dit_flops import audio_dit_train_flops
from mgen_jax.models.builders import build_audio_dit
from mgen_jax.planning.audio_plan import audio_analytic_flops, audio_batch_shapes
from mgen_jax.planning.plan import format_plan, plan_train_step

EXPERIMENT = "experiments/moviegen_audio_13b.py"


def paper_config():
    return import_python_file(EXPERIMENT, kind="config", function="get_config").get_config()


def tiny_config():
    """The paper experiment shrunk: tiny DAC-VAE (15 channels), tiny CLIP tower (23-d
    features), a tiny T5 of 13 tokens, 24 latent frames of 11 video frames, batch 8 on
    fsdp 2 x tensor 2; odd sizes on purpose."""
    cfg = paper_config()
    cfg.dac_vae = dac_vae_config("tiny")
    cfg.vision = clip_vision_config("tiny")
    cfg.audio_dit = audio_dit_config("tiny")
    cfg.text.encoders = {"t5": encoder_spec("t5", "tiny_t5", max_length=13)}
    for override in ("audio_dit.width=120", "audio_dit.depth=4", "audio_dit.num_heads=4",
                     "audio_dit.mlp_dim=352", "audio_dit.max_frames=24",
                     "audio_dit.attention=xla", "audio_dit.remat=full", "data.frames=11",
                     "audio_dit_train.batch_size=8", "audio_dit_train.steps=100",
                     "audio_dit_optimizer.warmup_steps=10"):
        apply_override(cfg, override)
    cfg.mesh = mesh_config(data=1, fsdp=2, context=1, tensor=2)
    return cfg


def test_paper_experiment_plans_30s_clips_with_metaclip_and_t5_base():
    cfg = paper_config()
    assert cfg.job == "video_to_audio"
    shapes = audio_batch_shapes(cfg)
    assert shapes["latents"] == ((1536, 768, 128), "float32")  # 30.72 s at 25 Hz x 128
    assert shapes["video"] == ((1536, 768, 1024), "float32")   # one MetaCLIP vector a frame
    assert shapes["text.t5"] == ((1536, 512, 768), "bfloat16")  # T5-base, 512 tokens
    assert shapes["text_mask.t5"] == ((1536, 512), "bool")
    assert build_audio_dit(cfg).num_params() == pytest.approx(12.44e9, rel=1e-3)
    flops = audio_analytic_flops(cfg)
    # ~6 x params x tokens for a model whose attention is 3.5% of the step.
    assert flops["total"] == pytest.approx(6 * 12.44e9 * 1536 * 768, rel=0.1)


def test_several_text_encoders_count_their_projections_exactly():
    cfg = tiny_config()
    cfg.text.encoders = {"a": encoder_spec("t5", "tiny_t5", max_length=5),
                         "b": encoder_spec("clip", "tiny_clip", max_length=9)}
    cfg.text.encoders.b.model.hidden_size = 72  # 64-wide T5, 72-wide CLIP
    got = audio_analytic_flops(cfg)
    w, b = cfg.audio_dit.width, cfg.audio_dit_train.batch_size
    assert got["text_tokens"] == 14
    assert got["parts"]["text_projection"] == pytest.approx(6 * (5 * 64 + 9 * 72) * w * b)
    one = audio_dit_train_flops(cfg.audio_dit, frames=24, text_tokens=14, text_dim=64,
                                video_dim=23, latent_channels=15, batch_size=b)
    assert got["parts"]["ffn"] == one["parts"]["ffn"]


@pytest.fixture(scope="module")
def plan():
    return plan_train_step(tiny_config(), "v5p:2x2x1")


@pytest.mark.slow  # compiles the audio DiT's train step twice for 4 TPU devices
def test_tiny_audio_plan_reports_the_audio_dit(plan):
    cfg = tiny_config()
    c = plan["config"]
    assert c["model"] == "audio_dit" and c["params"] == build_audio_dit(cfg).num_params()
    assert c["latent_frames"] == c["tokens_per_sample"] == 24
    assert c["audio_seconds"] == pytest.approx(24 / 25)
    assert c["video_features"]["frames"] == 11 and c["video_features"]["dim"] == 23
    assert c["text_encoders"] == {"t5": {"tokens": 13, "dim": 64}}
    assert plan["chips"] == plan["devices"] == 4
    assert plan["mesh"] == {"data": 1, "fsdp": 2, "context": 1, "tensor": 2}
    m = plan["memory_per_device"]
    kinds = m["arguments_by_kind"]
    # The device's shards of params, AdamW's two moments and the EMA (3x params).
    assert kinds["optimizer_state_bytes"] == pytest.approx(3 * kinds["params_bytes"], rel=0.02)
    # The state is donated and returned: the output is the state (plus scalar metrics), all
    # aliased. XLA counts TPU buffers padded to their (8, 128) tiles, which inflates this tiny
    # model's odd dims (15 latent channels): between the exact shard bytes and twice them.
    state = kinds["params_bytes"] + kinds["optimizer_state_bytes"]
    assert m["alias_bytes"] == pytest.approx(m["output_bytes"], rel=0.01)
    assert state <= m["alias_bytes"] < 2 * state
    # The rest of the arguments is the batch (and the key), padded likewise.
    assert kinds["batch_bytes"] <= m["argument_bytes"] - m["alias_bytes"] < 8 * kinds["batch_bytes"]
    # fsdp x tensor = 4-way: each device holds about a quarter of the fp32 params (replicated
    # norms and biases a little more).
    assert 0.24 < kinds["params_bytes"] / (4 * c["params"]) < 0.4
    assert m["temporary_bytes"] >= kinds["params_bytes"]  # at least the gradient shard
    assert m["fits"] is True and 0 < m["fraction_of_hbm"] < 0.01
    # Batch: 8 clips of 24 x 15 latents and 11 x 23 features (float32), 13 x 64 bf16 text and
    # its mask, split over the 2 fsdp devices (replicated over tensor).
    batch = 8 * (24 * 15 * 4 + 11 * 23 * 4 + 13 * 64 * 2 + 13) / 2
    assert kinds["batch_bytes"] == pytest.approx(batch, rel=0.01)


@pytest.mark.slow  # compiles the audio DiT's train step twice for 4 TPU devices
def test_tiny_audio_plan_flops_match_the_analytic_count(plan):
    f = plan["flops"]
    assert f["analytic_per_step"] == pytest.approx(audio_analytic_flops(tiny_config())["total"])
    assert f["loops"]["top_level_trip_counts"] == [4]  # the 4 scanned layers
    # Full remat: one more forward of every block (~4/3); small matmuls add elementwise work.
    assert 0.9 * f["expected_from_remat"]["hardware_over_model"] < f["compiled_over_analytic"]
    assert f["compiled_over_analytic"] < 1.6
    assert f["hlo_matmul_flops_per_step"] == pytest.approx(f["compiled_per_step"], rel=0.25)
    text = format_plan(copy.deepcopy(plan))
    assert "audio_dit tiny (0.96 s of audio)" in text and "params" in text
