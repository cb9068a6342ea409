"""Lazy re-export of public names from private modules (keeps ``import geodl.ops`` torch-only)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, table: dict[str, str]):
    """Return a module ``__getattr__`` resolving ``name -> package.<module>.name`` on first use."""

    def __getattr__(name: str):
        mod = table.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{mod}"), name)
        return value

    return __getattr__
