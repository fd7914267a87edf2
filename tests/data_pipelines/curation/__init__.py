"""Tests of data_pipelines.media and data_pipelines.curation, and their shared config."""
import runpy
from pathlib import Path

_TINY_CONFIG = Path(__file__).resolve().parents[3] / "experiments" / "data_tiny.py"


def tiny_config():
    """experiments/data_tiny.py's build config: the thresholds every test here curates with."""
    return runpy.run_path(str(_TINY_CONFIG))["get_config"]()
