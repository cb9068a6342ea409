"""Lazy re-export of public names from private modules (keeps ``import geodl.ops`` torch-only).

Every public subpackage ends its ``__init__`` with one line::

    __getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS)

so that the export boilerplate lives here once.
"""

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


def lazy_module(package: str, table: dict[str, str], *, extra: tuple[str, ...] = (), public=None):
    """``(__getattr__, __dir__, __all__)`` for a package whose names live in private modules.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    table : dict
        ``{public name: private module (relative, e.g. "_scatter")}``.
    extra : tuple of str
        Names listed by ``dir()`` besides the lazy ones (eagerly imported submodules, constants).
    public : iterable of str, optional
        ``__all__``; default: the sorted keys of ``table`` plus ``extra``.
    """
    names = sorted(table) + [e for e in extra if e not in table]
    all_ = list(public) if public is not None else names

    def __dir__():
        return sorted(set(names) | set(all_))

    return lazy_exports(package, table), __dir__, all_
