"""Results of a benchmark run: environment record, JSON + CSV files (atomic), text tables."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from geodl._checks import check_path
from geodl._io import atomic_write_text

__all__ = ["environment", "write_results", "print_table"]


def environment(seeds: Any = None) -> dict:
    """Versions, device and date recorded beside every result file.

    Examples
    --------
    >>> sorted(environment(seeds=0))[:3]
    ['cpu_threads', 'date', 'device']
    """
    import geodl

    env = {"geodl": geodl.__version__, "torch": torch.__version__,
           "python": platform.python_version(), "platform": platform.platform(),
           "cpu_threads": torch.get_num_threads(),
           "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"),
           "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if seeds is not None:
        env["seeds"] = seeds
    return env


def write_results(path, payload: dict, rows: list[dict]) -> tuple[Path, Path]:
    """Write ``path`` (JSON) and the rows as CSV beside it (same name, ``.csv``); atomic.

    The JSON holds ``payload``, the rows under ``"rows"`` and environment info under
    ``"environment"`` (versions, device, date, and ``payload["seeds"]`` / ``payload["seed"]``).

    Returns
    -------
    (json_path, csv_path)

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> j, c = write_results(p, {"task": "demo", "seed": 0}, [{"model": "a", "mse": 0.5}])
    >>> json.loads(j.read_text())["rows"][0]["mse"], c.read_text().splitlines()[0]
    (0.5, 'model,mse')
    """
    if not isinstance(payload, dict):
        raise TypeError(f"payload: expected a dict, got {type(payload).__name__}")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError("rows: expected a list of dicts")
    path = check_path("path", path)
    seeds = payload.get("seeds", payload.get("seed"))
    doc = {**payload, "rows": rows, "environment": environment(seeds)}
    atomic_write_text(path, json.dumps(doc, indent=2, default=str) + "\n")
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    csv_path = atomic_write_text(path.with_suffix(".csv"), buf.getvalue())
    return path, csv_path


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if v == v else "nan"
    return "" if v is None else str(v)


def print_table(rows: list[dict], columns: Sequence[str | tuple[str, str]], file=None) -> str:
    """Print ``rows`` as an aligned text table and return the text.

    ``columns`` lists row keys, or ``(key, header)`` pairs; missing values print empty.

    Examples
    --------
    >>> _ = print_table([{"model": "a", "mse": 0.00571234}], ["model", ("mse", "test MSE")])
    model  test MSE
    -----  --------
    a      0.005712
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows: expected a list of dicts, got {type(rows).__name__} ({rows!r:.60})")
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
        raise TypeError(f"columns: expected a list of keys or (key, header) pairs, got {type(columns).__name__}")
    cols = []
    for c in columns:
        if isinstance(c, str):
            c = (c, c)
        if not (isinstance(c, (tuple, list)) and len(c) == 2 and all(isinstance(v, str) for v in c)):
            raise TypeError(f"columns: expected a key (str) or a (key, header) pair of str, got {c!r:.60}")
        cols.append(tuple(c))
    cells = [[h for _, h in cols]] + [[_fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    print(text, file=file if file is not None else sys.stdout, flush=True)
    return text
