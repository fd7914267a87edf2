"""`mgen plan`: the real DiT train step compiled ahead of time for a small TPU topology (libtpu
describes v5p:2x2x1 on this CPU machine), and the pieces it is built from: the analytic FLOP
model, the replicated-parameter fraction and the HLO reader (loops, collectives)."""
import copy
import json
import math

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mgen_jax.cli import main
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.text import encoder_spec
from mgen_jax.models.dit.flops import dit_train_flops
from mgen_jax.parallel.replication import replicated_fraction
from mgen_jax.planning import hlo
from mgen_jax.planning.collectives import collectives_summary
from mgen_jax.planning.plan import format_plan, splash_forward_runs, whole_step_estimate

# Matmul-dominated on purpose (width 256, 32 video tokens x batch 8), so the compiled/analytic
# ratio measures the remat recompute rather than elementwise overheads.
TINY = ["--config.dit.width=256", "--config.dit.num_heads=4", "--config.dit.mlp_dim=768",
        "--config.dit.depth=4", "--config.dit.scan_unroll=1", "--config.dit.patch_size=(1, 2, 2)",
        "--config.data.frames=16",
        "--config.data.height=64", "--config.data.width=64", "--config.text.encoders.ul2.max_length=8",
        "--config.text.encoders.metaclip.max_length=8",
        "--config.dit_train.batch_size=8", "--config.mesh.data=1", "--config.mesh.fsdp=2",
        "--config.mesh.tensor=2", "--config.dit.attention=xla"]


def _plan(tmp_path_factory, remat: str) -> dict:
    out = tmp_path_factory.mktemp("plan") / f"plan_{remat}.json"
    main(["plan", "--config=experiments/quickstart.py", "--topology=v5p:2x2x1",
          f"--json={out}", *TINY, f"--config.dit.remat={remat}"])
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def plan_full(tmp_path_factory):
    return _plan(tmp_path_factory, "full")


@pytest.fixture(scope="module")
def plan_none(tmp_path_factory):
    return _plan(tmp_path_factory, "none")


@pytest.mark.slow  # compiles the planned train step
def test_plan_json_has_every_field(plan_full):
    p = plan_full
    for key in ("topology", "chip", "chips", "devices", "mesh", "rules", "config",
                "memory_per_device", "flops", "collectives", "xla_estimate",
                "replicated_parameter_fraction", "undivided_parameters", "compile_seconds"):
        assert key in p, key
    assert p["topology"] == "v5p:2x2x1" and p["chips"] == 4 and p["devices"] == 4
    assert p["mesh"] == {"data": 1, "fsdp": 2, "context": 1, "tensor": 2}
    assert p["rules"] == "default"
    c = p["config"]
    for key in ("dit_size", "params", "tokens_per_sample", "global_batch", "remat", "attention",
                "dtypes"):
        assert key in c, key
    assert c["tokens_per_sample"] == 2 * 4 * 4 and c["global_batch"] == 8
    assert c["remat"] == "full" and c["attention"] == "xla"
    assert c["params"] > 3_000_000
    for key in ("analytic_per_step", "compiled_per_step", "compiled_over_analytic",
                "flops_method", "hlo_matmul_flops_per_step", "pallas_kernels"):
        assert key in p["flops"], key
    # The phases are timed inside the whole plan's wall time (same unit, nothing double-counted).
    cs = p["compile_seconds"]
    assert 0 < cs["lower"] + cs["compile"] + cs["flops_variant"] <= cs["total_plan"]
    whole = p["xla_estimate"]["whole_step"]  # no Pallas kernel here: XLA's estimate is all of it
    assert whole["seconds"] == p["xla_estimate"]["step_seconds"]
    assert whole["mfu"] == pytest.approx(p["xla_estimate"]["implied_mfu"])


@pytest.mark.slow  # compiles the planned train step
def test_plan_memory_is_positive_and_consistent(plan_full):
    m = plan_full["memory_per_device"]
    kinds = m["arguments_by_kind"]
    state_bytes = kinds["params_bytes"] + kinds["optimizer_state_bytes"]
    # The step returns the updated state (params + AdamW moments) and a few scalar metrics.
    assert m["output_bytes"] == pytest.approx(state_bytes, rel=0.01)
    # The backward pass materialises at least the gradient of this device's parameter shard.
    assert m["temporary_bytes"] >= kinds["params_bytes"]
    assert m["total_bytes"] == (m["argument_bytes"] + m["output_bytes"] - m["alias_bytes"]
                                + m["temporary_bytes"] + m["generated_code_bytes"])
    assert m["hbm_bytes"] == 95 * 2 ** 30
    assert m["fraction_of_hbm"] == pytest.approx(m["total_bytes"] / m["hbm_bytes"])
    assert m["fits"] is True
    # The state is donated: the updated state (params + AdamW moments) aliases the old one.
    assert m["alias_bytes"] == pytest.approx(state_bytes, rel=0.01)
    # Arguments = the device's shards of params + AdamW moments (2x params) + batch.
    assert kinds["optimizer_state_bytes"] == pytest.approx(2 * kinds["params_bytes"], rel=0.01)
    assert sum(kinds.values()) == pytest.approx(m["argument_bytes"], rel=0.05)
    # fsdp x tensor = 4-way sharding: each device holds about a quarter of the fp32 params.
    full_params = plan_full["config"]["params"] * 4
    assert 0.2 < kinds["params_bytes"] / full_params < 0.35


@pytest.mark.slow  # compiles the planned train step
def test_compiled_flops_match_analytic_plus_remat(plan_full, plan_none):
    full, none = plan_full["flops"], plan_none["flops"]
    assert full["analytic_per_step"] == none["analytic_per_step"]
    # Full remat recomputes each block's forward: ~4/3 of the model FLOPs.
    assert 1.0 < full["compiled_over_analytic"] < 1.6
    assert full["compiled_over_analytic"] == pytest.approx(
        full["expected_from_remat"]["hardware_over_model"], rel=0.08)
    assert 0.95 < none["compiled_over_analytic"] < 1.15
    assert full["compiled_over_analytic"] - none["compiled_over_analytic"] == pytest.approx(
        full["expected_from_remat"]["hardware_over_model"] - 1, abs=0.06)
    # The HLO matmul count (every loop trip counted) agrees with the scan-corrected XLA count.
    for f in (full, none):
        assert f["hlo_matmul_flops_per_step"] == pytest.approx(f["compiled_per_step"], rel=0.1)
        assert f["loops"]["top_level_trip_counts"] == [4]
        assert f["pallas_kernels"]["count"] == 0
    # Without the correction XLA would have counted the 4 scanned layers as one.
    assert full["cost_analysis_raw_flops_per_device"] * 4 < 0.5 * full["compiled_per_step"]


@pytest.mark.slow  # compiles the planned train step
def test_plan_collectives_estimate_and_replication(plan_full):
    col = plan_full["collectives"]
    hlo_kinds = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
    for kind in hlo_kinds:  # executions per step: whole numbers, summed into the total
        assert isinstance(col[kind]["count"], int), kind
    assert col["total"]["count"] == sum(col[kind]["count"] for kind in hlo_kinds)
    assert col["total"]["bytes"] == pytest.approx(sum(col[kind]["bytes"] for kind in hlo_kinds))
    # FSDP gathers weights (per layer: more than one gather per scanned layer x 4 layers), and
    # reduce-scatters their gradients: each device gathers at least most of the float32 weights
    # (split over tensor=2, gathered over fsdp) once per step.
    assert col["all-gather"]["count"] > 8
    weights_per_tensor_shard = plan_full["config"]["params"] * 4 / plan_full["mesh"]["tensor"]
    assert col["all-gather"]["bytes"] >= 0.75 * weights_per_tensor_shard
    assert col["reduce-scatter"]["bytes"] >= 0.75 * weights_per_tensor_shard
    e = plan_full["xla_estimate"]
    assert "NOT a measurement" in e["label"]
    assert 0 < e["implied_mfu"] < 1
    # MFU = model FLOPs / (estimated seconds x chips x the chip's bf16 peak).
    assert e["implied_mfu"] == pytest.approx(plan_full["flops"]["analytic_per_step"] / (
        e["step_seconds"] * plan_full["chips"] * plan_full["chip"]["peak_bf16_flops"]))
    # > 0: norm scales are replicated (1-D, nothing to shard them over).
    assert 0 < plan_full["replicated_parameter_fraction"] <= 0.02


@pytest.mark.slow  # compiles the planned train step
def test_plan_reports_parameters_the_mesh_does_not_divide(plan_full):
    assert plan_full["undivided_parameters"] == {"count": 0, "parameters": []}  # all divide
    plan = copy.deepcopy(plan_full)
    plan["undivided_parameters"] = {"count": 1, "parameters": [
        {"path": "conditioner/projections/ul2/proj/kernel", "shape": [6, 256], "dim": 0,
         "logical_axis": "mlp", "mesh_axes": ["tensor"], "mesh_size": 2}]}
    text = format_plan(plan)
    assert "1 parameter dimension(s) replicated because the mesh does not divide them" in text
    assert "conditioner/projections/ul2/proj/kernel (6, 256): dim 0 (mlp) over tensor = 2" in text


def test_whole_step_adds_the_pallas_core_at_peak_and_scales_to_the_stage():
    # 256 chips at 459 TFLOP/s; XLA sees 5 s; the core costs 4.5/3 of its analytic 2e17.
    flops = {"attention_core_hardware_estimate": {"flops": 3e17}}
    w = whole_step_estimate({"step_seconds": 5.0}, flops, chips=256, peak_bf16_flops=459e12,
                            analytic_total=1e18, stage_steps=74_500)
    core_s = 3e17 / (256 * 459e12)
    assert w["attention_core_seconds"] == pytest.approx(core_s)
    assert w["seconds"] == pytest.approx(5.0 + core_s) and w["xla_seconds"] == 5.0
    assert w["mfu"] == pytest.approx(1e18 / ((5.0 + core_s) * 256 * 459e12))
    assert w["stage_days_one_slice"] == pytest.approx(74_500 * (5.0 + core_s) / 86_400)
    assert "estimate" in w["label"]
    # No Pallas kernel: the whole step is XLA's; no step estimate: nothing to report.
    plain = whole_step_estimate({"step_seconds": 2.0}, {}, chips=4, peak_bf16_flops=1e14,
                                analytic_total=4e14, stage_steps=10)
    assert plain["seconds"] == 2.0 and plain["mfu"] == pytest.approx(0.5)
    assert whole_step_estimate({"step_seconds": None}, flops, chips=4, peak_bf16_flops=1e14,
                               analytic_total=1.0, stage_steps=10) is None


def test_splash_forward_runs_from_the_compiled_kernel_names():
    # The 30B t2iv_768 plan's Pallas kernels (48 layers): full remat re-runs the flash forward,
    # save_splash_residuals does not; without splash kernels there is nothing to count.
    assert splash_forward_runs({"splash_mha_fwd_residuals": 96,
                                "splash_mha_dkv_no_residuals": 48}) == 2
    assert splash_forward_runs({"splash_mha_fwd_residuals": 48,
                                "splash_mha_dkv_no_residuals": 48}) == 1
    assert splash_forward_runs({"splash_mha_fwd_no_residuals": 4}) is None  # sampling: no bwd
    assert splash_forward_runs({}) is None


def test_analytic_flops_against_a_hand_count():
    cfg = load_config("experiments/quickstart.py", [
        "dit.width=8", "dit.num_heads=2", "dit.mlp_dim=12", "dit.depth=3", "dit.scan_unroll=1",
        "dit.patch_size=(1, 2, 2)", "dit.timestep_features=4", "tae.z_channels=4",
        "data.frames=16", "data.height=32", "data.width=32", "dit_train.batch_size=2"])
    cfg.text.encoders = {"ul2": encoder_spec("t5", "tiny_t5", max_length=5)}
    cfg.text.encoders.ul2.model.d_model = 6
    f = dit_train_flops(cfg)
    # Tokens: 16 frames / 8 = 2 latent frames, 32 px / 8 = 4 -> 2 x 2 x 2 = 8; p = 4*1*2*2 = 16.
    assert f["tokens_per_sample"] == 8 and f["text_tokens"] == 5
    # Forward FLOPs of one sample, one layer (N=8, L=5, W=8, F=12), 2 per multiply-add:
    self_proj = 4 * 2 * 8 * 8 * 8      # q, k, v, o on video tokens     4096
    cross_qo = 2 * 2 * 8 * 8 * 8       # cross q, o on video tokens     2048
    cross_kv = 2 * 2 * 5 * 8 * 8       # cross k, v on text tokens      1280
    ffn = 3 * 2 * 8 * 8 * 12           # gate, up, down                 4608
    self_core = 2 * 2 * 8 * 8 * 8      # scores + PV, 8 x 8 tokens      2048
    cross_core = 2 * 2 * 8 * 5 * 8     # scores + PV, 8 x 5 tokens      1280
    layer = self_proj + cross_qo + cross_kv + ffn + self_core + cross_core
    # Each part over the step: x 3 layers x batch 2 x 3 (forward + backward); the attention
    # cores are checked below.
    per_layer_parts = {"self_attention_qkvo": self_proj, "cross_attention_qo": cross_qo,
                       "cross_attention_kv": cross_kv, "ffn": ffn}
    for name, flops in per_layer_parts.items():
        assert f["parts"][name] == 3 * 2 * 3 * flops, name
    patch = 2 * 8 * 16 * 8             # patch embed 16 -> 8            2048
    final = 2 * 8 * 8 * 16             # final projection 8 -> 16       2048
    text = 2 * 5 * 6 * 8               # text projection 6 -> 8          480
    cond = 2 * (4 * 8 + 8 * 8 + 8 * 48 + 8 * 16)  # timestep MLP, adaLN, final adaLN  1216
    forward = 3 * layer + patch + final + text + cond
    for name, flops in (("patch_embed", patch), ("final_projection", final),
                        ("text_projection", text), ("conditioning", cond)):
        assert f["parts"][name] == 2 * 3 * flops, name
    assert f["total"] == 3 * 2 * forward == 311232   # forward + backward, batch 2
    assert f["parts"]["self_attention_core"] == 12 * 2 * 8 * 8 * 8 * 3
    assert f["parts"]["cross_attention_core"] == 12 * 2 * 8 * 5 * 8 * 3
    assert sum(f["parts"].values()) == f["total"]
    assert f["remat_recompute"]["flops"] == 0  # quickstart: remat none


def test_replicated_fraction_on_a_known_sharding():
    mesh = Mesh(np.asarray(jax.devices()[:8]).reshape(4, 2, 1), ("x", "z", "y"))
    params = {"w": jax.ShapeDtypeStruct((8, 4), np.float32),
              "norm": jax.ShapeDtypeStruct((3,), np.float32),
              "over_size_one_axis": jax.ShapeDtypeStruct((2, 2), np.float32),
              "two_axes": jax.ShapeDtypeStruct((4, 16), np.float32)}
    shardings = {"w": NamedSharding(mesh, P("x", None)),
                 "norm": NamedSharding(mesh, P()),
                 "over_size_one_axis": NamedSharding(mesh, P(None, "y")),  # 'y' has size 1
                 "two_axes": NamedSharding(mesh, P(None, ("x", "z")))}
    assert replicated_fraction(shardings, params) == pytest.approx((3 + 4) / (32 + 3 + 4 + 64))
    with pytest.raises(ValueError):
        replicated_fraction({"w": shardings["w"]}, params)


# A hand-written HLO module: a 6-iteration loop whose body all-gathers (once natively, once
# lowered as an all-reduce of a dynamic-update-slice) and multiplies; a reduce-scatter outside.
_HLO = """HloModule m

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(%a, %b)
}

%body (p: (s32[], f32[4,8])) -> (s32[], f32[4,8]) {
  %p = (s32[], f32[4,8]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %x = f32[4,8] get-tuple-element(%p), index=1
  %g = f32[8,8] all-gather(%x), channel_id=1, replica_groups={{0,1}}, dimensions={0}
  %c = f32[] constant(0)
  %z = f32[8,8] broadcast(%c), dimensions={}
  %zero = s32[] constant(0)
  %dus = f32[8,8] dynamic-update-slice(%z, %x, %zero, %zero)
  %g2 = f32[8,8] all-reduce(%dus), channel_id=2, replica_groups={{0,1}}, to_apply=%add
  %d = f32[4,8] dot(%x, %g2), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  ROOT %t = (s32[], f32[4,8]) tuple(%next, %d)
}

%cond (p: (s32[], f32[4,8])) -> pred[] {
  %p = (s32[], f32[4,8]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %n = s32[] constant(6)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (x: f32[4,8]) -> f32[2,8] {
  %x = f32[4,8] parameter(0)
  %c0 = s32[] constant(0)
  %start = s32[] copy(%c0)
  %init = (s32[], f32[4,8]) tuple(%start, %x)
  %w = (s32[], f32[4,8]) while(%init), condition=%cond, body=%body
  %y = f32[4,8] get-tuple-element(%w), index=1
  ROOT %rs = f32[2,8] reduce-scatter(%y), channel_id=3, replica_groups={{0,1}}, dimensions={0}, to_apply=%add
}
"""


def test_hlo_reader_counts_loop_trips_and_collectives():
    module = hlo.analyze(_HLO)
    assert [l["trip_count"] for l in module.loops] == [6]
    assert module.multiplicity["body"] == 6 and module.multiplicity["main"] == 1
    col = collectives_summary(module)
    assert col["all-gather"]["count"] == 12          # 2 per iteration x 6
    assert col["all-gather"]["bytes"] == 12 * 8 * 8 * 4
    assert col["all-gather"]["lowered_as_all_reduce"]["count"] == 6
    assert col["all-reduce"]["count"] == 0
    assert col["reduce-scatter"] == {"count": 1, "bytes": 4 * 8 * 4}
    assert col["total"]["count"] == 13
    assert hlo.matmul_flops(module) == 6 * 2 * 4 * 8 * 8
    assert math.isclose(hlo.shape_bytes("(bf16[2,3]{1,0}, s32[])"), 2 * 3 * 2 + 4)
