"""Benchmark tasks and the one training loop (DESIGN.md layer 6).

Tasks register by name in :data:`TASKS` as ``"module:function"``; the function takes the argument
list that follows ``geodl bench NAME`` and returns an exit code. Modules import lazily, so a task's
heavy dependencies load only when it runs.
"""

from __future__ import annotations

import importlib

from geodl._lazy import lazy_exports

TASKS: dict[str, str] = {
    "nbody": "geodl.bench.tasks.nbody:main",
    "landocean": "geodl.bench.tasks.location:main_landocean",
    "checkerboard": "geodl.bench.tasks.location:main_checkerboard",
}

_EXPORTS = {
    # the training loop and result writers (_runner.py)
    "train": "_runner",
    "evaluate": "_runner",
    "print_table": "_runner",
    "TrainResult": "_runner",
    "write_results": "_runner",
    "plot_curves": "_runner",
}

__all__ = sorted(_EXPORTS) + ["TASKS", "run_task"]
__getattr__ = lazy_exports(__name__, _EXPORTS)


def run_task(name: str, argv: list[str]) -> int:
    """Run the registered task ``name`` with its own command-line arguments."""
    if name not in TASKS:
        raise ValueError(f"task: unknown benchmark {name!r}; expected one of {sorted(TASKS)}")
    mod, fn = TASKS[name].split(":")
    return int(getattr(importlib.import_module(mod), fn)(argv) or 0)
