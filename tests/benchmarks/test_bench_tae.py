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
    model = r["model"]
    h, w, z = model["height"], model["width"], model["z_channels"]
    for row in r["memory"]:
        for name in ("encode_tiled", "decode_tiled"):
            m = row[name]
            assert m["peak_bytes"] == (m["argument_bytes"] + m["output_bytes"] + m["temp_bytes"]
                                       - m["alias_bytes"])
        # Sizes from the shapes (float32): the clip, and its latent (8x smaller in t, h and w).
        video_bytes = 4 * row["frames"] * h * w * 3
        latent_bytes = 4 * (row["frames"] // 8) * (h // 8) * (w // 8) * z
        enc, dec = row["encode_tiled"], row["decode_tiled"]
        assert dec["output_bytes"] == video_bytes  # the decoded clip
        assert 2 * latent_bytes <= enc["output_bytes"] < 2 * latent_bytes + 1024  # mean, log-var
        # Encoder and decoder each take only their half of the weights: together, every parameter.
        assert (enc["argument_bytes"] - video_bytes) + (dec["argument_bytes"] - latent_bytes) == (
            4 * model["num_params"])
    growth = r["memory_growth"]
    assert growth["decode_tiled"]["temp_ratio"] < 1.2 < growth["decode_untiled"]["temp_ratio"]
    assert [row["frames"] for row in r["throughput"]] == [32]  # --quick times the 32-frame clip
    for row in r["throughput"]:
        for kind in ("encode", "decode"):  # frames/s of the timed (median) run, a finite rate
            assert math.isfinite(row[f"{kind}_frames_per_s"])
            assert row[f"{kind}_frames_per_s"] == row["frames"] / row[f"{kind}_seconds"]
