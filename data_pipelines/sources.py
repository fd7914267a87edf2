"""Data sources: what `mgen train` writes into a workdir's data folder, chosen by cfg.data.source
from configs/registries.py:DATA_SOURCES. Each source is a function (data_cfg, out_dir) ->
manifest that writes the dataset (ArrayRecord shards + manifest.json, the format the Grain
pipeline reads) or returns the manifest of the one already there."""
from mgen_jax.configs.registries import DATA_SOURCES


def prepare_data(data_cfg, out_dir: str) -> dict:
    """Write (or find) the dataset of data_cfg.source in out_dir; returns its manifest."""
    return DATA_SOURCES.load(data_cfg.source)(data_cfg, out_dir)
