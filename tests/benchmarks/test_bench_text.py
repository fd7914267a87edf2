"""`mgen bench text --quick` through the CLI entry point: one row per encoder family with its
batch x length, layer and parameter counts, and finite positive throughput (benchmarks are
measured, not asserted)."""
import json
import math

from mgen_jax import cli

FAMILIES = {"ul2": "t5", "byt5-small": "t5", "t5-base": "t5", "metaclip-h14-long": "clip"}


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_bench_text_quick_writes_json(tmp_path, capsys):
    out = tmp_path / "bench" / "text.json"
    cli.main(["bench", "text", "--quick", f"--json={out}"])
    printed = capsys.readouterr().out
    assert "tokens/s" in printed and f"wrote {out}" in printed
    r = json.loads(out.read_text())

    assert r["benchmark"] == "text" and r["quick"] is True
    assert r["machine"]["backend"] == "cpu" and _positive(r["matmul_peak"]["flops_per_s"])
    rows = {row["name"]: row for row in r["encoders"]}
    assert {name: row["family"] for name, row in rows.items()} == FAMILIES
    assert set(r["summary"]) == set(FAMILIES)
    for name, row in rows.items():
        assert row["tokens"] == row["batch"] * row["length"] > 0
        assert _positive(row["tokens_per_s"]) and _positive(row["seconds"])
        assert row["tokens_per_s"] == row["tokens"] / row["seconds"]
        assert row["seconds_min"] <= row["seconds"] <= row["seconds_max"]
        assert len(row["seconds_all"]) == r["repeats"]
        assert _positive(row["compile_seconds"]) and _positive(row["xla_flops"])
        assert _positive(row["fraction_of_matmul_peak"])
        if name != "ul2":  # run at full depth: the very model whose size is reported as full
            assert (row["layers"], row["num_params"]) == (row["full_layers"],
                                                          row["full_num_params"])
        assert f"{row['batch']}x{row['length']} tokens" in r["summary"][name]
    # UL2 runs scaled down (fewer blocks at the real width) and says so, with an estimate.
    ul2 = rows["ul2"]
    assert 1 <= ul2["layers"] < ul2["full_layers"] and ul2["num_params"] < ul2["full_num_params"]
    assert ul2["estimated_full_depth_tokens_per_s"] == (
        ul2["tokens_per_s"] * ul2["layers"] / ul2["full_layers"])
    assert f"{ul2['layers']}/{ul2['full_layers']} layers" in r["summary"]["ul2"]
    assert all("estimated_full_depth_tokens_per_s" not in row
               for name, row in rows.items() if name != "ul2")
