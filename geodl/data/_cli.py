"""``geodl data``: the data home and its cached procedural datasets.

  geodl data root                      print the data root (``$GEODL_DATA``, or the user cache)
  geodl data list                      what is cached under the root, with sizes
  geodl data generate NAME [--quick]   build a dataset's cache file (no download)
  geodl data verify NAME [--quick]     check that the cached file loads with the expected shapes
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main"]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _parser() -> argparse.ArgumentParser:
    from geodl.data._registry import DATASETS

    names = ", ".join(f"{k} ({v.summary})" for k, v in DATASETS.items())
    p = argparse.ArgumentParser(prog="geodl data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"datasets: {names}")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("root", help="print the data root")
    sub.add_parser("list", help="list what is cached, with sizes")
    for action in ("generate", "verify"):
        s = sub.add_parser(action, help=f"{action} a dataset's cache file")
        s.add_argument("name", choices=sorted(DATASETS))
        s.add_argument("--quick", action="store_true", help="the quick-size variant (where there is one)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--root", default=None, help="data root (default: geodl.data.default_root())")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``geodl data``; returns the exit code (1 when ``verify`` fails)."""
    from geodl.data._registry import DATASETS, cached_files
    from geodl.data._root import default_root

    args = _parser().parse_args(argv)
    if args.action == "root":
        print(default_root())
        return 0
    if args.action == "list":
        root = default_root()
        entries = cached_files(root)
        print(f"data root: {root}" + ("" if root.is_dir() else " (does not exist yet)"))
        for name, n, size in entries:
            print(f"  {name:<20} {n:>5} file{'s' if n != 1 else ' '}  {_size(size):>10}")
        if not entries:
            print("  (nothing cached)")
        return 0
    root = Path(args.root) if args.root else default_root()
    ds = DATASETS[args.name]
    if args.action == "generate":
        path = ds.generate(root, args.quick, args.seed)
        print(f"generated {path}")
        print(ds.verify(root, args.quick, args.seed))
        return 0
    try:
        print(f"ok: {ds.verify(root, args.quick, args.seed)}")
    except (FileNotFoundError, ValueError) as exc:
        print(f"FAILED: {exc}")
        return 1
    return 0
