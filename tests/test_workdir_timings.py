"""<workdir>/timings.json: each timed phase's wall seconds, the latest run's value per phase."""
import json
import time

import pytest

from mgen_jax.workdir import phase_timer, read_timings, timings_path


def test_phases_accumulate_and_a_rerun_replaces_its_own_entry(tmp_path, capsys):
    assert read_timings(str(tmp_path)) == {}
    with phase_timer(str(tmp_path), "tae"):
        time.sleep(0.2)
    with phase_timer(str(tmp_path), "dit"):
        pass
    first = read_timings(str(tmp_path))
    assert list(first) == ["tae", "dit"] and first["tae"] >= 0.2 and first["dit"] < 0.2
    assert "[tae] 0 s" in capsys.readouterr().out  # one line per phase, whole seconds
    with phase_timer(str(tmp_path), "tae"):
        pass
    second = json.loads(open(timings_path(str(tmp_path))).read())
    assert second["dit"] == first["dit"] and second["tae"] < 0.2


def test_a_failed_phase_records_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with phase_timer(str(tmp_path), "tae"):
            raise RuntimeError("killed")
    assert read_timings(str(tmp_path)) == {}
