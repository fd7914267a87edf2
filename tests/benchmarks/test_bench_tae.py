"""`mgen bench tae --quick`: JSON with memory per clip length and throughput; the tiled decode's
working memory stays flat as the clip doubles while the untiled decode's grows (compiled memory
analysis: deterministic, not a timing)."""
import json
import math

import pytest

from mgen_jax import cli


@pytest.mark.slow  # ~25 s: keeps the default run within its 15-minute budget; run with -m slow
def test_bench_tae_quick_reports_flat_tiled_memory(tmp_path, capsys):
    out = tmp_path / "tae.json"
    cli.main(["bench", "tae", "--quick", f"--json={out}"])
    assert f"wrote {out}" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["benchmark"] == "tae" and r["quick"] is True
    assert r["model"]["temporal_compression"] == 8 and r["model"]["spatial_compression"] == 8
    frames = [row["frames"] for row in r["memory"]]
    assert frames == sorted(frames) and len(frames) >= 2
    for row in r["memory"]:
        for name in ("encode_tiled", "decode_tiled"):
            m = row[name]
            assert m["peak_bytes"] == (m["argument_bytes"] + m["output_bytes"] + m["temp_bytes"]
                                       - m["alias_bytes"]) > 0
    growth = r["memory_growth"]
    assert growth["decode_tiled"]["temp_ratio"] < 1.2 < growth["decode_untiled"]["temp_ratio"]
    for row in r["throughput"]:
        assert math.isfinite(row["encode_frames_per_s"]) and row["encode_frames_per_s"] > 0
        assert math.isfinite(row["decode_frames_per_s"]) and row["decode_frames_per_s"] > 0
