"""The video_to_audio job refuses what it cannot run before writing anything."""
import pytest

from mgen_jax.configs.loading import load_config
from mgen_jax.training.video_to_audio_job import check_audio_config, run_video_to_audio


def _cfg():
    return load_config("experiments/quickstart_av.py:smoke")


def test_quickstart_av_is_a_valid_audio_experiment():
    cfg = _cfg()
    check_audio_config(cfg)
    assert cfg.job == "video_to_audio" and cfg.flow.sampler == "midpoint"


@pytest.mark.parametrize("key, value, message", [
    ("data.source", "shapes", "needs data with sound: data.source='shapes'"),
    ("data.audio_sample_rate", 48000, "data.audio_sample_rate=48000 differs from "
                                      "dac_vae.sample_rate=8000"),
])
def test_bad_audio_config_is_named(tmp_path, key, value, message):
    cfg = _cfg()
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ValueError, match=message):
        run_video_to_audio(cfg, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
