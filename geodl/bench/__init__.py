"""Benchmark tasks and the one training loop.

Tasks register by name in :data:`TASKS` as ``"module:function"``; the function takes the argument
list that follows ``geodl bench NAME`` and returns an exit code. Each task is a
:class:`~geodl.bench.Task` declaration (see :mod:`geodl.bench._task`) and shares the same common
flags (:data:`~geodl.bench.COMMON_FLAGS`). Modules import lazily, so a task's heavy dependencies
load only when it runs.

- the loop (``_loop``): :func:`train` (optimiser / scheduler factories, epoch hooks, whole-set
  metrics, DDP with exact evaluation), :func:`evaluate`, :class:`TrainResult`;
- checkpoints (``_checkpoint``): atomic, resumable, ``weights_only`` loads;
- results (``_results``): :func:`write_results` (JSON + CSV), :func:`print_table`;
- plots (``_plots``): :func:`plot_curves`, :func:`plot_sphere_maps` (matplotlib optional).
"""

from __future__ import annotations

import importlib

from geodl._lazy import lazy_module

TASKS: dict[str, str] = {
    "nbody": "geodl.bench.tasks.nbody:main",
    "landocean": "geodl.bench.tasks.location:main_landocean",
    "checkerboard": "geodl.bench.tasks.location:main_checkerboard",
    "shapes": "geodl.bench.tasks.modelnet:main_shapes",
    "modelnet": "geodl.bench.tasks.modelnet:main_modelnet",
    "vinet": "geodl.bench.tasks.vinet:main",
    "articulated": "geodl.bench.tasks.articulated:main",
    "poincare": "geodl.bench.tasks.poincare:main",
    "inertia": "geodl.bench.tasks.inertia:main",
    "symsol": "geodl.bench.tasks.symsol:main_symsol",
    "pascal3d": "geodl.bench.tasks.symsol:main_pascal3d",
}

_EXPORTS = {
    "train": "_loop",
    "evaluate": "_loop",
    "TrainResult": "_loop",
    "print_table": "_results",
    "write_results": "_results",
    "environment": "_results",
    "plot_curves": "_plots",
    "plot_sphere_maps": "_plots",
    "Task": "_task",
    "COMMON_FLAGS": "_task",
}


def _entry(name: str):
    if name not in TASKS:
        raise ValueError(f"task: unknown benchmark {name!r}; expected one of {sorted(TASKS)}")
    mod, fn = TASKS[name].split(":")
    return getattr(importlib.import_module(mod), fn)


def run_task(name: str, argv: list[str]) -> int:
    """Run the registered task ``name`` with its own command-line arguments.

    ``argv`` is a list of strings (``None`` is refused: the task would parse ``sys.argv``).
    """
    if isinstance(argv, (str, bytes)) or not isinstance(argv, (list, tuple)) or not all(isinstance(a, str) for a in argv):
        raise TypeError(f"argv: expected a list of str, got {argv!r:.60}")
    return int(_entry(name)(list(argv)) or 0)


def task_summaries() -> dict[str, str]:
    """``{task name: one-line summary}`` for every registered task (what ``geodl bench --help`` prints).

    Examples
    --------
    >>> sorted(task_summaries())[:2]
    ['articulated', 'checkerboard']
    """
    out = {}
    for name in TASKS:
        task = getattr(_entry(name), "__self__", None)
        out[name] = getattr(task, "summary", "")
    return out


__getattr__, __dir__, __all__ = lazy_module(__name__, _EXPORTS, extra=("TASKS", "run_task", "task_summaries"))
