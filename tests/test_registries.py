"""Every extension point is one registry (configs/registries.py): its targets exist and live in
the layer that owns them, and validation, errors and the CLI read their names from it."""
import importlib

import pytest

from mgen_jax import cli
from mgen_jax.configs import registries
from mgen_jax.configs.loading import load_config
from mgen_jax.configs.registry import Entry, Registry, RegistryError
from mgen_jax.configs.validation import ConfigError

QUICKSTART = "experiments/quickstart.py:smoke"


def _string_targets(registry):
    for name in registry:
        entry = registry.entry(name)
        for part, target in [(None, entry.target), *entry.meta.items()]:
            if isinstance(target, str) and ":" in target:
                yield name, part, target


@pytest.mark.parametrize("key", sorted(registries.ALL))
def test_every_target_resolves_inside_its_owner(key):
    registry = registries.ALL[key]
    owners = (registry.owner,) if isinstance(registry.owner, str) else registry.owner
    for name, part, target in _string_targets(registry):
        module = target.partition(":")[0]
        assert any(module == o or module.startswith(o + ".") for o in owners if o), (
            f"{key} {name}: {target} is outside {owners}")
        if module.endswith(".splash") or module.endswith(".cudnn"):
            importlib.import_module(module)  # platform kernels: importable here, run elsewhere
        loaded = registry.load(name, part)
        attribute = target.partition(":")[2]
        if callable(loaded):  # defined in that module, not re-exported from another layer
            assert (loaded.__module__, loaded.__name__) == (module, attribute), target
        else:  # a table (the mesh rules): logical axis names -> mesh axes
            assert isinstance(loaded, dict) and loaded, target


def test_unknown_names_list_the_choices():
    with pytest.raises(RegistryError, match="remat policy 'fast' unknown; choose one of none, "
                                            "full, save_dots, save_attention_out, offload"):
        registries.REMAT_POLICIES.load("fast")
    small = Registry("colour", "", {"red": Entry(1, "warm"), "blue": Entry(2, "cold")})
    assert small.names() == ("red", "blue") and small.load("blue") == 2
    assert small.describe() == "red: warm; blue: cold"


@pytest.mark.parametrize("key, value, registry", [
    ("dit.attention", "flash9", registries.ATTENTION_BACKENDS),
    ("dit.remat", "fast", registries.REMAT_POLICIES),
    ("dit.context_parallel", "tree", registries.CONTEXT_PARALLEL),
    ("mesh.rules", "megatron", registries.MESH_RULES),
    ("flow.schedule", "cosine", registries.SCHEDULES),
    ("flow.sampler", "heun", registries.SAMPLERS),
    ("data.source", "webvid", registries.DATA_SOURCES),
    ("job", "audio", registries.JOBS),
    ("text.encoders.ul2.kind", "llama", registries.TEXT_ENCODER_KINDS),
])
def test_validation_reads_its_choices_from_the_registry(key, value, registry):
    with pytest.raises(ConfigError) as err:
        load_config(QUICKSTART, [f"{key}={value}"])
    assert str(err.value) == f"{key}: {value!r} unknown; choose one of {registry.choices()}"


def test_dit_size_switch_reads_the_presets():
    cfg = load_config(QUICKSTART, ["dit.size=1b", "dit.scan_unroll=1"])
    assert (cfg.dit.width, cfg.dit.depth) == (1536, 24)
    with pytest.raises(ConfigError, match="DiT size '2b' unknown; choose one of tiny, small, "
                                          "base, 1b, 5b, 30b"):
        load_config(QUICKSTART, ["dit.size=2b"])


def test_cli_help_lists_the_registries(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = capsys.readouterr().out
    for name in registries.BENCHMARKS:
        assert f"{name}: {registries.BENCHMARKS.entry(name).help}" in " ".join(out.split())
    with pytest.raises(SystemExit):
        cli.main(["convert", "--help"])
    assert "{" + ",".join(registries.TEXT_ENCODERS.names()) + "}" in capsys.readouterr().out
