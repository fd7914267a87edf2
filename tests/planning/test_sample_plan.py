"""`mgen plan --mode=sample`: text-to-video sampling (one guided DiT step, the TAE's tiled decode,
the text encoders) compiled ahead of time for a small TPU topology (libtpu describes v5p:2x2x1
on this CPU machine), checked against the train plan of the same config and the analytic
FLOP model."""
import json

import pytest

from mgen_jax.cli import main
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.tae import spatial_compression, temporal_compression
from mgen_jax.models.dit.flops import dit_train_flops
from mgen_jax.planning.sample_plan import decode_tiles, format_sample_plan

# test_plan.py's tiny DiT (matmul-dominated: width 256), at 32 px x 32 frames so the TAE decode
# compiles quickly and is tiled: the tiny TAE preset (pinned here: 8x8x8) gives 4 latent frames
# of 4 x 4, decoded in tiles of 2 overlapping by 1 = 3 tiles; 1x1x1 patches = 64 tokens/sample.
# remat none: the train step it is compared with then holds exactly forward + backward.
TINY = ["--config.dit.width=256", "--config.dit.num_heads=4", "--config.dit.mlp_dim=768",
        "--config.dit.depth=4", "--config.dit.scan_unroll=1", "--config.dit.patch_size=(1, 1, 1)",
        "--config.tae.ch=16", "--config.tae.ch_mult=(1, 2, 4)", "--config.tae.num_res_blocks=1",
        "--config.tae.pixel_patch=(2, 2)", "--config.tae.temporal_downsamples=2",
        "--config.tae.z_channels=16",
        "--config.data.frames=32", "--config.data.height=32", "--config.data.width=32",
        "--config.text.encoders.ul2.max_length=8", "--config.text.encoders.metaclip.max_length=8",
        "--config.dit_train.batch_size=8", "--config.mesh.data=1", "--config.mesh.fsdp=2",
        "--config.mesh.tensor=2", "--config.dit.attention=xla", "--config.dit.remat=none",
        "--config.tae.tiling.decode_latents=2", "--config.tae.tiling.decode_overlap=1"]
CONFIG = "experiments/quickstart.py"


def _run(tmp_path_factory, *flags) -> dict:
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    main(["plan", f"--config={CONFIG}", "--topology=v5p:2x2x1", f"--json={out}", *flags, *TINY])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return _run(tmp_path_factory, "--mode=sample")


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    # The default mode, unchanged: the train step. Its HLO matmul count multiplies every loop
    # trip, so the unrolled variant is not needed for the comparison below.
    return _run(tmp_path_factory, "--no-flops-variant")


def _cfg():
    return load_config(CONFIG, [flag[len("--config."):] for flag in TINY])


@pytest.mark.slow  # compiles the sampling step and decode
def test_guidance_doubles_the_dit_batch(sample):
    c = sample["config"]
    assert sample["mode"] == "sample" and sample["topology"] == "v5p:2x2x1"
    # Default videos per call: half the train batch, so the guided batch is the train batch.
    assert c["videos_per_call"] == 4 and c["dit_batch"] == 8
    cfg = _cfg()
    tc, sc = temporal_compression(cfg.tae), spatial_compression(cfg.tae)
    assert (tc, sc) == (8, 8)
    assert c["latent_shape"] == [4, 32 // tc, 32 // sc, 32 // sc, 16] == [4, 4, 4, 4, 16]
    assert c["tokens_per_sample"] == 4 * 4 * 4
    f = sample["dit_step"]["flops"]
    # The analytic forward is a third of the train step's count at batch 2 x videos (the train
    # plan's compiled count matches that analytic count: test_plan.py, remat none) ...
    assert f["analytic_forward"] == pytest.approx(dit_train_flops(cfg, batch_size=8)["total"] / 3)
    # ... and the compiled program really runs the DiT at that batch: at batch 4 (no guidance
    # batching) its FLOPs would be half the analytic count.
    assert 0.95 < f["compiled_over_analytic"] < 1.15
    assert f["hlo_matmul_flops_per_step"] == pytest.approx(f["analytic_forward"], rel=0.02)
    # The layer scan was corrected: raw cost_analysis counts one of the 4 layers.
    assert f["cost_analysis_raw_flops_per_device"] * 4 < 0.5 * f["compiled_per_step"]
    # The latent enters sharded on the batch axis (4 videos over fsdp = 2).
    assert sample["dit_step"]["sharding"]["latent"].startswith("P('fsdp'")


@pytest.mark.slow  # compiles the train step too (~25 s more on a 2-core CPU)
def test_forward_flops_are_a_third_of_the_compiled_train_step(sample, train):
    s, t = sample["dit_step"]["flops"], train["flops"]
    assert train["config"]["global_batch"] == sample["config"]["dit_batch"]  # same batch
    assert t["analytic_per_step"] == pytest.approx(3 * s["analytic_forward"])
    # Matmul against matmul (both from the compiled HLO, every loop trip counted): a backward
    # costs two forwards, less the input gradients nobody needs (latent patches, text
    # embeddings: < 1% here), so the forward is a third of the train step to within 3%.
    assert s["hlo_matmul_flops_per_step"] / t["hlo_matmul_flops_per_step"] == pytest.approx(
        1 / 3, rel=0.03)
    # XLA's own (scan-corrected) FLOPs also hold the non-matmul work: norms, softmax, the
    # guidance mix and Euler update; on this width-256 model that adds under 10%.
    assert s["compiled_per_step"] / t["hlo_matmul_flops_per_step"] == pytest.approx(
        1 / 3, rel=0.1)


@pytest.mark.slow  # compiles the sampling step and decode
def test_memory_fields_add_up(sample):
    parts = {"dit": sample["dit_step"]["memory_per_device"],
             "tae": sample["tae_decode"]["memory_per_device"],
             "text": sample["text_encoders"]["memory_per_device"]}
    for name, m in parts.items():
        assert m["total_bytes"] == (m["argument_bytes"] + m["output_bytes"] - m["alias_bytes"]
                                    + m["temporary_bytes"] + m["generated_code_bytes"]), name
        assert m["hbm_bytes"] == 95 * 2 ** 30
        assert m["fraction_of_hbm"] == pytest.approx(m["total_bytes"] / m["hbm_bytes"]), name
        assert m["argument_bytes"] > 0 and m["temporary_bytes"] > 0, name
    dit = parts["dit"]
    kinds = dit["arguments_by_kind"]
    # Arguments: this device's shard of the params + latent + both text halves (TPU layouts pad
    # small arrays, so the program's own figure may be larger).
    assert kinds["params_bytes"] <= dit["argument_bytes"] <= 1.5 * sum(kinds.values())
    # fsdp x tensor = 4-way: a quarter of the float32 params, as the checkpoint holds them.
    assert 0.2 < kinds["params_bytes"] / (sample["config"]["params"] * 4) < 0.35
    # The latent is donated: the next step's latent reuses its buffer.
    assert dit["alias_bytes"] == dit["output_bytes"] > 0
    # Resident estimate: all arguments at once + the largest temporaries.
    r = sample["resident_memory_estimate"]
    assert r["bytes"] == sum(m["argument_bytes"] for m in parts.values()) + max(
        m["temporary_bytes"] for m in parts.values())


@pytest.mark.slow  # compiles the sampling step and decode
def test_decode_is_scan_corrected(sample):
    d = sample["tae_decode"]
    assert d["tiles"]["temporal_tiles"] == 3 and d["tiles"]["window_decodes"] == 3
    assert d["video_shape"] == [1, 32, 32, 32, 3] and d["rounds"] == 1
    # cost_analysis sees one of the 3 tiles; corrected, the count covers all three, and agrees
    # with the HLO's convolution FLOPs (every trip counted) plus elementwise work (norms, SiLU).
    assert d["cost_analysis_raw_flops"] < 0.5 * d["flops_per_video"]
    assert 1.0 <= d["flops_per_video"] / d["hlo_matmul_flops_per_video"] < 1.3


@pytest.mark.slow  # compiles the sampling step and decode
def test_seconds_per_video_adds_up(sample):
    t, e = sample["timing"], sample["dit_step"]["xla_estimate"]
    assert "NOT" in t["label"] and "NOT a measurement" in e["label"]
    assert t["steps"] == _cfg().flow.sample_steps
    assert e["step_seconds"] > 0 and t["step_seconds"] == e["step_seconds"]
    assert t["decode_seconds_per_call"] > 0 and t["text_seconds_per_call"] > 0
    assert t["decode_seconds_per_call"] == pytest.approx(
        sample["tae_decode"]["rounds"] * sample["tae_decode"]["seconds_per_video"])
    assert (t["sampler"], t["forwards_per_step"]) == ("euler", 1)  # midpoint: 2 forwards
    assert t["seconds_per_call"] == pytest.approx(
        t["steps"] * t["forwards_per_step"] * t["step_seconds"] + t["decode_seconds_per_call"]
        + t["text_seconds_per_call"])
    assert t["seconds_per_video"] == pytest.approx(t["seconds_per_call"] / t["videos_per_call"])
    text = format_sample_plan(sample)
    assert "not a measurement" in text and "seconds/video" in text
    assert "DiT batch 8 (cond + uncond)" in text


def test_every_sampler_says_how_many_forwards_a_step_takes():
    from mgen_jax.configs.registries import SAMPLERS
    forwards = {n: SAMPLERS.entry(n).meta["evaluations_per_step"] for n in SAMPLERS.names()}
    assert forwards == {"euler": 1, "midpoint": 2}


def test_decode_tiles_of_the_768px_stage():
    cfg = load_config("experiments/moviegen_30b.py:t2iv_768", [])
    # 256 frames -> 32 latent frames; tiles of 4 advancing by 2: starts 0, 2, ..., 28.
    t = decode_tiles(cfg)
    assert (t["temporal_tiles"], t["spatial_windows"]) == (15, 1)
    assert t["window_latent_shape"] == [1, 4, 96, 96, 16]
    cfg.tae.tiling.update(spatial_tile=48, spatial_overlap=8)  # 96 latent px: 3 x 3 windows
    t = decode_tiles(cfg)
    assert (t["spatial_windows"], t["window_decodes"]) == (9, 135)
    assert t["window_latent_shape"] == [1, 4, 48, 48, 16]
