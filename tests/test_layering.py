"""Imports run one way (tests/layering.py states the layers) and no import cycle exists."""
from tests.layering import import_cycles, import_graph, layer_violations, package_sources


def test_every_import_runs_down_the_layers():
    assert layer_violations(import_graph(package_sources())) == []


def test_no_import_cycles():
    assert import_cycles(import_graph(package_sources())) == []


def test_a_wrong_import_is_caught():
    """The check itself: upward, lazy, relative and leaf-breaking imports are all reported."""
    sources = package_sources()
    sources["mgen_jax.models.layers"] = (
        sources["mgen_jax.models.layers"][0]
        + "\n\ndef _late():\n    from mgen_jax.training.loop import run_training\n", False)
    sources["data_pipelines.shapes"] = (
        sources["data_pipelines.shapes"][0] + "\nimport mgen_jax.training.optimizer\n", False)
    sources["mgen_jax.flow.path"] = (
        sources["mgen_jax.flow.path"][0] + "\nfrom ..evaluation import attributes\n", False)
    sources["mgen_jax.workdir"] = (
        sources["mgen_jax.workdir"][0] + "\nfrom mgen_jax.configs import schema\n", False)
    assert layer_violations(import_graph(sources)) == [
        "data_pipelines.shapes (data_pipelines) imports mgen_jax.training.optimizer (training)",
        "mgen_jax.flow.path (flow) imports mgen_jax.evaluation.attributes (evaluation)",
        "mgen_jax.models.layers (models) imports mgen_jax.training.loop (training)",
        "mgen_jax.workdir (a leaf) imports mgen_jax.configs.schema",
    ]


def test_a_cycle_is_caught():
    sources = package_sources()
    sources["mgen_jax.configs.mesh"] = (
        sources["mgen_jax.configs.mesh"][0] + "\nfrom mgen_jax.configs import schema\n", False)
    assert ["mgen_jax.configs.mesh", "mgen_jax.configs.schema"] in import_cycles(
        import_graph(sources))
