"""A config as sorted (dotted.key, value) rows: `mgen config show`, and diffs of two configs."""
import ml_collections


def flatten_config(cfg, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key in sorted(cfg.keys()):
        value, name = cfg[key], f"{prefix}{key}"
        if isinstance(value, (ml_collections.ConfigDict, dict)):
            rows += flatten_config(value, name + ".")
        else:
            rows.append((name, value))
    return rows
