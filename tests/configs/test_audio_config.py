"""Audio experiment configs: preset keys switch whole presets from the command line, and the
audio job's clips are checked against the audio DiT rather than the video DiT's tables."""
import pytest

from mgen_jax.configs.loading import ConfigError, load_config
from mgen_jax.configs.registries import AUDIO_DIT_PRESETS, DAC_VAE_PRESETS


def test_preset_overrides_switch_the_whole_preset():
    cfg = load_config("experiments/quickstart_av.py",
                      ["audio_dit.size=13b", "dac_vae.size=paper", "audio_dit.depth=2",
                       "dac_vae.sample_rate=48000", "data.audio_sample_rate=48000"])
    assert cfg.audio_dit.width == AUDIO_DIT_PRESETS.load("13b")["width"]
    assert cfg.audio_dit.depth == 2  # later overrides adjust the preset
    assert cfg.dac_vae.latent_channels == DAC_VAE_PRESETS.load("paper")["latent_channels"]
    with pytest.raises(ConfigError, match="audio_dit.size"):
        load_config("experiments/quickstart_av.py", ["audio_dit.size=huge"])


def test_audio_clips_must_fit_the_audio_position_table():
    with pytest.raises(ValueError, match="audio_dit.max_frames: 40 latent frames are fewer"):
        load_config("experiments/quickstart_av.py", ["audio_dit.max_frames=40"])
    # 768 frames of video features would overflow the video DiT's tables: not checked here.
    assert load_config("experiments/moviegen_audio_13b.py").data.frames == 768
