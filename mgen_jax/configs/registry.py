"""Registries: one named table per extension point (attention kernels, remat policies, data
sources, ...), declared in configs/registries.py.

An entry is a name, a one-line help text, and its target: a value (a preset dict), or the
`"package.module:attribute"` of the code that implements it. `validate()`, the CLI's help and every
"unknown ...; choose one of ..." message read the names from here, so adding an extension is
writing its code and one entry.

Targets are strings so that this table can sit at the bottom of the layers (validation needs the
names before any model code is imported) while the code lives in the layer that owns it; each
registry names that layer (`owner`), only code of that layer resolves its targets (`load`), and
tests/test_registries.py checks that every target exists and lives there.
"""
import dataclasses
import importlib
from typing import Any


class RegistryError(ValueError):
    """An unknown name; the message lists the known ones."""


@dataclasses.dataclass(frozen=True)
class Entry:
    target: Any          # a value, or "package.module:attribute"
    help: str
    meta: dict = dataclasses.field(default_factory=dict)   # per-entry facts (e.g. per_shard)


class Registry:
    def __init__(self, what: str, owner: str | tuple[str, ...], entries: dict[str, Entry]):
        """what: what an entry is ("attention backend"); owner: the package(s) whose code the
        targets are ("mgen_jax.models.attention"), or "" for value-only registries."""
        self.what, self.owner, self._entries = what, owner, dict(entries)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise RegistryError(f"{self.what} {name!r} unknown; choose one of {self.choices()}")
        return self._entries[name]

    def choices(self) -> str:
        return ", ".join(self._entries)

    def describe(self) -> str:
        """'name: help' lines, for --help texts and docs."""
        return "; ".join(f"{name}: {e.help}" for name, e in self._entries.items())

    def with_meta(self, key: str, value=True) -> tuple[str, ...]:
        return tuple(n for n, e in self._entries.items() if e.meta.get(key) == value)

    def load(self, name: str, part: str | None = None):
        """The entry's target (or its meta[part]), importing its module if it is a
        "module:attribute" string."""
        entry = self.entry(name)
        target = entry.target if part is None else entry.meta[part]
        if not isinstance(target, str) or ":" not in target:
            return target
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)
