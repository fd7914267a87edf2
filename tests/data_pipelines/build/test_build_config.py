"""The data-build config: loading with overrides, validation naming the key, and the CLI's
one-line errors for a bad config, source or Beam flag (all before any pipeline runs)."""
import pytest

from data_pipelines.build.build_config import load_build_config, validate_build_config
from data_pipelines.build.driver import build_dataset, pipeline_options
from mgen_jax.cli import main
from mgen_jax.configs.data_build import data_build_config
from mgen_jax.configs.validation import ConfigError

from . import TINY_CONFIG, tiny_config


def test_default_and_tiny_configs_validate_and_overrides_apply():
    assert load_build_config().target_fps == 16.0
    cfg = tiny_config("records_per_shard=5", "dedup=false", "store=encoded")
    assert (cfg.records_per_shard, cfg.dedup, cfg.store, cfg.target_fps) == (5, False,
                                                                             "encoded", 8.0)


@pytest.mark.parametrize("change, key", [
    (dict(min_seconds=5.0, max_seconds=4.0), "min_seconds"),
    (dict(store="zip"), "store"),
    (dict(records_per_shard=0), "records_per_shard"),
    (dict(min_motion=50.0), "min_motion"),
    (dict(max_hamming=65), "max_hamming"),
    (dict(target_fps=0.0), "target_fps"),
])
def test_impossible_values_name_their_key(change, key):
    cfg = data_build_config()
    cfg.update(change)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate_build_config(cfg)


def test_bad_buckets_name_the_bucket_and_key():
    for change, where in ((dict(frames=0), "buckets[2].frames"),
                          (dict(kind="gif"), "buckets[2].kind"),
                          (dict(name="v/x"), "buckets[2].name")):
        cfg = data_build_config()
        cfg.buckets[2].update(change)
        with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            validate_build_config(cfg)
    cfg = data_build_config()
    cfg.buckets[-1]["frames"] = 2
    with pytest.raises(ConfigError, match="an image bucket holds 1 frame"):
        validate_build_config(cfg)


def test_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'min_sides'"):
        tiny_config("min_sides=3")
    cfg = data_build_config()
    cfg.extra = 1
    with pytest.raises(ConfigError, match="unknown data-build config key 'extra'"):
        validate_build_config(cfg)


def test_an_unknown_source_or_beam_flag_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--source='ftp:x'.*folder:PATH"):
        build_dataset("ftp:x", str(tmp_path / "out"), tiny_config(), show_progress=False)
    with pytest.raises(ValueError, match="unknown Beam pipeline option.*--direct_workers"):
        pipeline_options(["--direct_workers=2"])
    assert pipeline_options([])[1] == "DirectRunner"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--source=nowhere"], "mgen data: --source='nowhere': expected one of"),
    (["--source=shapes", "--config.store=zip"], "'store'"),
    (["--source=folder:/no/such/dir"], "no such directory"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "build", f"--out={tmp_path / 'out'}", f"--config={TINY_CONFIG}",
              "--no-progress", *argv])
    text = str(exit_info.value.code)
    assert message in text and "\n" not in text


def test_sft_table_validates_and_a_bad_bucket_rate_is_named():
    cfg = load_build_config("experiments/data_sft.py")
    rates = sorted({(b["frames"], b["fps"]) for b in cfg.buckets})
    assert rates == [(256, 16.0), (256, 24.0)] and not cfg.images
    for bad in (0.0, "fast"):
        cfg.buckets = [dict(cfg.buckets[0], fps=bad)] + list(cfg.buckets[1:])
        with pytest.raises(ConfigError, match=r"buckets\[0\]\.fps"):
            validate_build_config(cfg)
