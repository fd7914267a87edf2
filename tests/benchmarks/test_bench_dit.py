"""`mgen bench dit --quick` through the CLI entry point: the JSON carries every figure with sane
types and signs (no timing thresholds: benchmarks are measured, not asserted)."""
import json
import math
import os

import jax
import pytest

from mgen_jax import cli
from mgen_jax.benchmarks.registry import format_table
from mgen_jax.configs.registries import BENCHMARKS
from mgen_jax.configs.registry import RegistryError


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.mark.slow  # compiles and times a real step; like `mgen bench tae --quick`, run with -m slow
def test_bench_dit_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "bench" / "dit.json"
    cli.main(["bench", "dit", "--quick", f"--json={out}"])
    printed = capsys.readouterr().out
    assert "fraction_of_matmul_peak" in printed and f"wrote {out}" in printed
    r = json.loads(out.read_text())

    assert r["benchmark"] == "dit" and r["quick"] is True
    m = r["machine"]
    assert m["cpu_count"] == os.cpu_count() and 1 <= m["usable_cpus"] <= m["cpu_count"]
    assert m["backend"] == "cpu" and m["jax"] == jax.__version__

    peak = r["matmul_peak"]
    assert _positive(peak["flops_per_s"])
    assert peak["flops_per_s"] == max(peak["before"]["flops_per_s"], peak["after"]["flops_per_s"])
    for row in peak["before"]["sizes"]:
        assert row["flops"] == 2.0 * row["n"] ** 3 and _positive(row["seconds"])

    model = r["model"]
    assert model["scan_layers"] is False
    # At least every block's weight matrices (self q/k/v/o, cross q/k/v/o, gated FFN), and less
    # than twice that (embeddings, conditioning, norms and biases are the small rest).
    w, mlp = model["width"], model["mlp_dim"]
    block_matrices = model["depth"] * (8 * w * w + 3 * w * mlp)
    assert block_matrices <= model["num_params"] < 2 * block_matrices, model["num_params"]
    # Latents are 8x smaller in t, h and w than the clip, then cut into patches.
    (f, h, wd), p = model["data_shape"], model["patch_size"]
    assert model["token_grid"] == [f // 8 // p[0], h // 8 // p[1], wd // 8 // p[2]] == [1, 2, 2]
    assert model["tokens_per_sample"] == math.prod(model["token_grid"])
    step = r["step"]
    assert _positive(step["step_seconds"]) and _positive(step["compile_seconds"])
    assert step["step_seconds_min"] <= step["step_seconds"] <= step["step_seconds_max"]
    assert len(step["step_seconds_all"]) == step["steps_timed"]
    assert math.isfinite(step["final_loss"])

    flops = r["flops"]
    assert _positive(flops["model_flops_per_step"]) and _positive(flops["xla_flops_per_step"])
    assert flops["model_flops_per_step"] == pytest.approx(sum(flops["model_flops_parts"].values()))
    # XLA counts everything the analytic count leaves out (norms, softmax, optimizer): never less
    # than the matmuls, and the same order of magnitude with the layers unrolled.
    assert 0.9 < flops["xla_over_model"] < 3
    assert r["achieved_model_flops_per_s"] == pytest.approx(
        flops["model_flops_per_step"] / step["step_seconds"])
    assert r["fraction_of_matmul_peak"] == pytest.approx(
        r["achieved_model_flops_per_s"] / peak["flops_per_s"])
    assert _positive(r["cpu_time"]["fraction_of_matmul_peak"])

    att = r["attention_memory"]
    if att["available"]:
        backends = {row["backend"] for row in att["rows"]}
        assert backends == {"xla", "chunked"}
        assert all(_positive(row["peak_bytes"]) for row in att["rows"])
        assert set(att["peak_growth"]) == backends
        assert all(_positive(g) for g in att["peak_growth"].values())


def test_registry_names_and_errors():
    assert "dit" in BENCHMARKS and callable(BENCHMARKS.load("dit"))
    with pytest.raises(RegistryError, match="unknown; choose one of dit, tae, text"):
        BENCHMARKS.load("no_such_bench")
    with pytest.raises(SystemExit):  # argparse rejects a name the registry does not know
        cli.main(["bench", "no_such_bench"])
    table = format_table({"a": {"b": 1.23456789, "c": [1, 2]}, "d": [{"e": "x"}]})
    assert table.splitlines() == ["a.b     1.235", "a.c     [1, 2]", "d[0].e  x"]
