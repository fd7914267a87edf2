"""`mgen bench sample --quick`: seconds per video and per denoising step, consistent with each
other, and the TAE decode's share of a call."""
import json

import pytest

from mgen_jax import cli


@pytest.mark.slow  # compiles and runs the sampling program; run with -m slow
def test_bench_sample_quick_reports_consistent_times(tmp_path, capsys):
    out = tmp_path / "sample.json"
    cli.main(["bench", "sample", "--quick", f"--json={out}"])
    assert f"wrote {out}" in capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["benchmark"] == "sample" and r["quick"] is True
    q = r["quickstart"]
    assert q["videos"] == 2 and q["steps"] == 3 and q["frames_hw"] == [8, 16, 16]
    assert q["seconds_per_video"] == pytest.approx(q["seconds_per_call"] / q["videos"])
    assert 0.0 < q["decode_share"] < 1.0
    assert q["decode_seconds"] == pytest.approx(q["decode_share"] * q["seconds_per_call"])
    # Denoising + decode + text encoding make up the call (denoising clipped at 0).
    rest = q["seconds_per_call"] - q["decode_seconds"] - q["text_encode_seconds"]
    assert q["seconds_per_denoising_step"] == pytest.approx(max(rest, 0.0) / q["steps"])
    assert q["compile_and_first_call_s"] > q["seconds_per_call"]
