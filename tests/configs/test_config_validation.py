"""Configs load through the real path, take overrides, and reject bad keys/shapes up front."""
import subprocess
import sys

import pytest

from mgen_jax.configs.loading import apply_override, load_config
from mgen_jax.configs.schema import default_experiment
from mgen_jax.configs.validation import ConfigError, validate

QUICKSTART = "experiments/quickstart.py"


def test_quickstart_loads_and_overrides_apply_with_types():
    cfg = load_config(QUICKSTART, ["dit_optimizer.lr=3e-4", "data.height=48", "dit.scan_layers=false",
                                   "dit.patch_size=(1, 2, 2)", "tae_optimizer.lr=1"])
    assert cfg.dit_optimizer.lr == pytest.approx(3e-4)
    assert cfg.data.height == 48 and cfg.dit.scan_layers is False
    assert cfg.tae_optimizer.lr == 1.0 and isinstance(cfg.tae_optimizer.lr, float)


@pytest.mark.parametrize("override, named", [
    ("dit_train.lrr=1e-4", "dit_train.lrr"),
    ("nonsense.x=1", "nonsense"),
    ("data.height=abc", "data.height"),
])
def test_bad_override_names_the_key(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(QUICKSTART, [override])


@pytest.mark.parametrize("override, named", [
    ("data.height=36", "data.height"),     # not a multiple of the TAE's 8x compression
    ("data.width=20", "data.width"),
    ("data.frames=12", "data.frames"),
    ("dit.num_heads=3", "dit.num_heads"),
    ("mesh.data=0", "mesh.data"),
    ("tae.norm_groups=5", "tae.norm_groups"),
    ("flow.latent_sample=median", "flow.latent_sample"),
])
def test_impossible_shapes_are_rejected(override, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(QUICKSTART, [override])


def test_resolution_must_also_divide_by_the_dit_patch():
    load_config(QUICKSTART, ["data.height=40"])  # 1x1x1 patches: 40 = 5 latent rows, fine
    with pytest.raises(ConfigError, match=r"data\.height"):  # 40 is not 8 (TAE) x 2 (patch)
        load_config(QUICKSTART, ["dit.patch_size=(1, 2, 2)", "data.height=40"])


def test_unknown_key_inside_an_experiment_file_is_rejected():
    cfg = default_experiment()
    cfg.dit.depht = 3  # a typo written in the experiment itself
    with pytest.raises(ConfigError, match=r"dit\.depht"):
        validate(cfg)


def test_override_of_group_with_scalar_is_rejected():
    cfg = default_experiment()
    with pytest.raises(ConfigError, match="unknown config key 'dit.width.x'"):
        apply_override(cfg, "dit.width.x=3")


def test_cli_fails_fast_naming_the_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mgen_jax.cli", "train", f"--config={QUICKSTART}",
         "--config.data.heigth=32", f"--workdir={tmp_path / 'wd'}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "data.heigth" in proc.stderr
    assert not (tmp_path / "wd").exists()  # nothing was started


def test_dit_size_override_switches_the_whole_preset_then_other_overrides_apply():
    cfg = load_config("experiments/quickstart.py", ["dit.depth=3", "dit.scan_unroll=1",
                                                    "dit.size=1b", "data.height=256",
                                                    "data.width=256"])
    assert (cfg.dit.size, cfg.dit.width, cfg.dit.num_heads, cfg.dit.depth) == ("1b", 1536, 16, 3)
    with pytest.raises(ConfigError, match="dit.size"):
        load_config("experiments/quickstart.py", ["dit.size=2b"])


@pytest.mark.parametrize("overrides, named", [
    (["data.source=records"], "data.dir"),  # a built dataset must be named
    (["data.batching=greedy"], "data.batching"),
    (["data.batching=token_budget"], "data.token_budget"),
    (["data.mixture.videos=-1.0"], "data.mixture"),
])
def test_records_data_settings_are_checked(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(QUICKSTART, overrides)


def test_folder_experiment_needs_only_its_dataset():
    cfg = load_config("experiments/folder_t2v.py", ["data.dir=/some/build"])
    assert cfg.data.source == "records" and cfg.data.fps == 8
    with pytest.raises(ConfigError, match=r"data\.dir"):
        load_config("experiments/folder_t2v.py", [])
