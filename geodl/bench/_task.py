"""A benchmark task is a short declaration on shared plumbing, with one set of common flags.

Every task accepts the same common flags (:data:`COMMON_FLAGS`)::

    --quick          a small, fast configuration of the task
    --epochs N       override the task's number of epochs
    --seed N         seed of the data, the initialisation and the shuffling (default 0)
    --device DEV     torch device (default cpu)
    --out DIR        results folder (default ./geodl-bench/<task>)
    --run-dir DIR    folder of the resumable run checkpoints (default ./geodl-bench/<task>/runs)
    --no-resume      start over even if a checkpoint exists
    --no-progress    no progress bar or per-epoch lines

and adds its own with ``add_arguments``. A task module declares::

    TASK = Task("mytask", "one line for `geodl bench --help`", run=_run, add_arguments=_add)
    main = TASK.main

and registers ``"mytask": "geodl.bench.tasks.mymodule:main"`` in :data:`geodl.bench.TASKS`.
``run(args)`` receives the parsed namespace with ``args.out`` and ``args.run_dir`` as
:class:`pathlib.Path`, ``args.resume`` and ``args.progress`` as booleans.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Task", "COMMON_FLAGS", "add_common_arguments", "common_options", "positive_int", "name_list",
           "torch_device"]

COMMON_FLAGS = ("--quick", "--epochs", "--seed", "--device", "--out", "--run-dir", "--no-resume",
                "--no-progress")
_COMMON_TITLE = "common options (every task)"


def positive_int(text: str) -> int:
    """``argparse`` type: an int >= 1.

    Examples
    --------
    >>> positive_int("3")
    3
    """
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return v


def _finite_float(text: str, positive: bool) -> float:
    import math

    what = "a positive finite number" if positive else "a non-negative finite number"
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(v) and (v > 0 if positive else v >= 0)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """``argparse`` type: a finite float > 0.

    >>> positive_float("1e-3")
    0.001
    """
    return _finite_float(text, True)


def nonneg_float(text: str) -> float:
    """``argparse`` type: a finite float >= 0.

    >>> nonneg_float("0")
    0.0
    """
    return _finite_float(text, False)


def name_list(choices, what: str = "name"):
    """``argparse`` type: a non-empty comma-separated list of distinct names, each one of ``choices``.

    Parameters
    ----------
    choices : sequence of str or callable
        The allowed names, or a zero-argument callable returning them (called when the option is
        parsed, so a registry can be imported lazily).
    what : str
        What a name is, for the error message (``"model"``, ``"encoder"``).

    Returns
    -------
    callable
        ``parse(text) -> list[str]`` raising :class:`argparse.ArgumentTypeError` (which ``argparse``
        reports as ``error: argument --flag: ...``, exit status 2) on an empty list, a repeated or an
        unknown name.

    Examples
    --------
    >>> parse = name_list(["a", "b"], "model")
    >>> parse("b, a")
    ['b', 'a']
    >>> parse("c")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: unknown model 'c'; expected some of ['a', 'b']
    """

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if not names:
            raise argparse.ArgumentTypeError(f"expected a non-empty comma-separated list of {what}s, got {text!r}")
        allowed = list(choices() if callable(choices) else choices)
        for n in names:
            if n not in allowed:
                raise argparse.ArgumentTypeError(f"unknown {what} {n!r}; expected some of {allowed}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise argparse.ArgumentTypeError(f"{what} {repeated[0]!r} given more than once in {text!r}")
        return names

    parse.__name__ = f"{what} list"
    return parse


def torch_device(text: str) -> str:
    """``argparse`` type: a torch device string that exists on this machine (returned unchanged).

    Examples
    --------
    >>> torch_device("cpu")
    'cpu'
    >>> torch_device("gpu")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a torch device such as 'cpu' or 'cuda:0', got 'gpu'
    """
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise argparse.ArgumentTypeError(f"expected a torch device such as 'cpu' or 'cuda:0', got {text!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} CUDA "
                                             "device(s)")
    return text


def add_common_arguments(parser: argparse.ArgumentParser, task: str) -> argparse._ArgumentGroup:
    """Add the common flags (:data:`COMMON_FLAGS`) to ``parser`` in their own group."""
    g = parser.add_argument_group(_COMMON_TITLE)
    g.add_argument("--quick", action="store_true", help="a small, fast configuration of the task")
    g.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help="override the task's number of epochs")
    g.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the data, the initialisation and the shuffling (default 0)")
    g.add_argument("--device", type=torch_device, default="cpu", help="torch device (default cpu)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help=f"results folder (default ./geodl-bench/{task})")
    g.add_argument("--run-dir", default=None, metavar="DIR",
                   help=f"folder of the resumable run checkpoints (default ./geodl-bench/{task}/runs)")
    g.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    g.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    return g


def common_options(parser: argparse.ArgumentParser) -> list[str]:
    """The option strings of ``parser``'s common-options group (for tests and help)."""
    for g in parser._action_groups:
        if g.title == _COMMON_TITLE:
            return [s for a in g._group_actions for s in a.option_strings]
    return []


@dataclass(frozen=True)
class Task:
    """A benchmark task: a name, a one-line summary, its own flags and a ``run(args)`` function.

    Parameters
    ----------
    name : str
        ``geodl bench <name>``.
    summary : str
        One line for ``geodl bench --help``.
    run : callable
        ``run(args) -> exit code``; ``args`` holds the common flags (``out``, ``run_dir`` resolved
        to paths, ``resume``, ``progress``) and the task's own.
    add_arguments : callable, optional
        ``add_arguments(parser)`` adds the task-specific flags.
    description : str
        Longer text for ``geodl bench <name> --help``.

    Examples
    --------
    >>> t = Task("demo", "does nothing", run=lambda args: 0 if args.out.name == "demo" else 1)
    >>> t.main(["--quick"])
    0
    >>> common_options(t.parser()) == [s for f in COMMON_FLAGS for s in [f]]
    True
    """

    name: str
    summary: str
    run: Callable[[argparse.Namespace], int]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name: expected a non-empty str, got {self.name!r:.60}")
        if not isinstance(self.summary, str):
            raise TypeError(f"summary: expected a str, got {type(self.summary).__name__}")
        if not callable(self.run):
            raise TypeError(f"run: expected a callable run(args) -> int, got {type(self.run).__name__}")
        if self.add_arguments is not None and not callable(self.add_arguments):
            raise TypeError(f"add_arguments: expected a callable or None, got {type(self.add_arguments).__name__}")
        if not isinstance(self.description, str):
            raise TypeError(f"description: expected a str, got {type(self.description).__name__}")

    def parser(self) -> argparse.ArgumentParser:
        """The task's argument parser: common flags first, then the task's own."""
        p = argparse.ArgumentParser(prog=f"geodl bench {self.name}",
                                    description=self.description or self.summary,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        add_common_arguments(p, self.name)
        if self.add_arguments is not None:
            self.add_arguments(p.add_argument_group(f"{self.name} options"))
        return p

    def parse(self, argv: list[str] | None) -> argparse.Namespace:
        """Parse ``argv`` and resolve the defaults of the common flags."""
        args = self.parser().parse_args(argv)
        args.out = Path(args.out) if args.out is not None else Path("geodl-bench") / self.name
        args.run_dir = (Path(args.run_dir) if args.run_dir is not None
                        else Path("geodl-bench") / self.name / "runs")
        args.resume = not args.no_resume
        args.progress = not args.no_progress
        return args

    def main(self, argv: list[str] | None = None) -> int:
        """Entry point of ``geodl bench <name>``."""
        return int(self.run(self.parse(argv)) or 0)
