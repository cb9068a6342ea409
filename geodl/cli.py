"""The ``geodl`` command: ``info``, ``check``, ``bench``, ``data``.

``geodl --version``            the installed version
``geodl info``                 versions, devices and kernel back ends
``geodl check MOD:FACTORY ...``  run the equivariance suite on a user model (see ``geodl check -h``)
``geodl bench TASK ...``       run a benchmark task (see ``geodl bench --help``, ``geodl bench TASK -h``)
``geodl data ACTION ...``      the data home: ``root``, ``list``, ``generate NAME``, ``verify NAME``

Exit status: 0 success (for ``check``: every check passed), 1 ``check`` found the model not
equivariant, 2 a usage error (unknown command, task or option; a bad option value), and for
``check`` also a model that cannot be imported, built or called.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys


def _version(mod: str) -> str:
    try:
        m = importlib.import_module(mod)
    except Exception as exc:  # optional package missing or broken
        return f"not available ({type(exc).__name__})"
    return str(getattr(m, "__version__", "installed"))


def info(argv: list[str] | None = None) -> int:
    import torch

    import geodl

    print(f"geodl {geodl.__version__}  (python {platform.python_version()}, {platform.machine()})")
    print("packages:")
    for name in ["torch", "torch_geometric", "e3nn", "healpy", "roma", "trimesh", "numpy", "scipy",
                 "triton", "geomstats", "matplotlib", "sphericart.torch"]:
        print(f"  {name:<18} {_version(name)}")
    print("devices:")
    print(f"  cpu                {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"  cuda:{i}             {torch.cuda.get_device_name(i)}")
    else:
        print("  cuda               not available")
    try:
        from geodl.ops import available_backends

        print("kernel back ends:")
        for op, backends in available_backends().items():
            print(f"  {op:<24} {', '.join(backends)}")
    except (ImportError, AttributeError):
        print("kernel back ends:   (geodl.ops back-end table not available)")
    return 0


def bench_help() -> str:
    """The text of ``geodl bench --help``: usage, one line per task, the common flags."""
    from geodl.bench import COMMON_FLAGS, task_summaries

    tasks = task_summaries()
    width = max(map(len, tasks))
    lines = ["usage: geodl bench TASK [options]   (geodl bench TASK --help for a task's options)", "",
             "tasks:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in tasks.items()]
    lines += ["", "common options (every task): " + " ".join(COMMON_FLAGS)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="geodl", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("command", choices=["info", "check", "bench", "data"], help="what to run")
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    if argv[0] in ("--version", "-V"):
        import geodl

        print(f"geodl {geodl.__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "info":
        return info(rest)
    if cmd == "check":
        from geodl.testing._cli import main as check_main

        return int(check_main(rest) or 0)
    if cmd == "bench":
        from geodl.bench import run_task

        if not rest or rest[0] in ("-h", "--help"):
            print(bench_help())
            return 0 if rest else 2
        from geodl.bench import TASKS

        if rest[0] not in TASKS:
            print(f"geodl bench: error: unknown task {rest[0]!r}; expected one of {sorted(TASKS)} "
                  "(geodl bench --help)", file=sys.stderr)
            return 2
        traceback = "--traceback" in rest
        args = [a for a in rest[1:] if a != "--traceback"]
        try:
            return run_task(rest[0], args)
        except (ValueError, TypeError) as exc:  # bad input met during a run (a checkpoint, a cache, a size)
            if traceback:
                raise
            print(f"geodl bench {rest[0]}: error: {exc} (--traceback shows where)", file=sys.stderr)
            return 2
    if cmd == "data":
        from geodl.data._cli import main as data_main

        return int(data_main(rest) or 0)
    parser.parse_args(argv[:1])  # prints the argparse error for an unknown command
    return 2


if __name__ == "__main__":
    sys.exit(main())
