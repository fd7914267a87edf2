"""Running the benchmarks `mgen bench NAME` knows (configs/registries.py:BENCHMARKS: name ->
"module:function" returning a JSON-able dict), and printing their results.

Each function takes `quick: bool` (tiny sizes, for tests) and returns a dict. Adding a benchmark
is one registry entry; modules are imported only when their benchmark runs (the CLI stays light).
"""
from mgen_jax.configs.registries import BENCHMARKS


def run_benchmark(name: str, *, quick: bool = False) -> dict:
    return BENCHMARKS.load(name)(quick=quick)


def _flatten(value, prefix: str = ""):
    """(dotted.key, value) rows of nested dicts; lists of scalars stay one row."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for i, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def format_table(result: dict) -> str:
    """A two-column, human-readable table of a benchmark's (nested) result."""
    rows = [(key, _format_value(value)) for key, value in _flatten(result)]
    width = max((len(key) for key, _ in rows), default=0)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
