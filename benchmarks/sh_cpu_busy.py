"""Spherical harmonics on a shared CPU: geodl vs sphericart-torch at 1 and 2 threads, on a quiet
machine and beside one busy process, with and without geodl's 2 MiB output pages.

The matrix: threads {1, 2} x load {quiet, busy} x geodl's huge pages {on, off} x lmax {10, 20},
100k float32 points. Per cell the median (and quartiles) of ``--runs`` forward calls (default 11)
and ``--fb-runs`` forward+backward calls of each tool, the tools timed round-robin in the same
process so that drifting load hits them alike; ratio = sphericart-torch time / geodl time (> 1:
geodl faster). "busy" = one process spinning in a Python loop, started by this script after the
quiet cells and stopped at the end. Each thread count runs in its own process with
``OMP_NUM_THREADS`` set (sphericart-torch carries its own OpenMP runtime, which reads it at start;
geodl follows ``torch.set_num_threads``). "hugepages off" is geodl with
``GEODL_DISABLE_HUGEPAGES=1``; sphericart-torch allocates 4 KiB pages in both. The torch forward
that the C kernel replaced (``GEODL_DISABLE_CPU_KERNEL=1``) and the op alone (``geodl::sh_real``'s
CPU implementation on the same unit vectors, without the public function's input checks and
normalisation, i.e. what sphericart-torch is given) are timed beside them for reference.

Usage::

    python benchmarks/sh_cpu_busy.py            # ~5 min on 2 idle cores; the matrix goes into
                                                # benchmarks/results/sh_cpu.json ("busy_matrix")
    python benchmarks/sh_cpu_busy.py --quick    # 20k points, 3 runs: a smoke test (prints only)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "sh_cpu.json"


def _busy_process() -> subprocess.Popen:
    """One process spinning on a core until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)


def _quantiles(v: list[float]) -> dict:
    q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0]] * 3
    return {"median": round(statistics.median(v) * 1e3, 3), "q1": round(q[0] * 1e3, 3),
            "q3": round(q[2] * 1e3, 3), "min": round(min(v) * 1e3, 3)}


def _child(args) -> int:
    """Measure every cell of one thread count; print one JSON line per cell."""
    import torch

    import sphericart.torch as sct

    from geodl.ops import spherical_harmonics
    from geodl.ops._sh import _sh_real_ref
    from geodl.ops._sh_cpu import kernel_info

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.points, 3, generator=g)
    x = x / x.norm(dim=1, keepdim=True)

    def with_env(fn, **env):
        def call(lmax, p):
            old = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                return fn(lmax, p)
            finally:
                for k, v in old.items():
                    if v is None:
                        del os.environ[k]
                    else:
                        os.environ[k] = v
        return call

    models = {}

    def sphericart(lmax, p):
        if lmax not in models:
            models[lmax] = sct.SphericalHarmonics(lmax)
        return models[lmax](p)

    tools = {"geodl": spherical_harmonics,
             "geodl-4k-pages": with_env(spherical_harmonics, GEODL_DISABLE_HUGEPAGES="1"),
             "sphericart-torch": sphericart,
             "geodl-torch-forward": with_env(spherical_harmonics, GEODL_DISABLE_CPU_KERNEL="1"),
             "geodl-op": lambda lmax, p: _sh_real_ref(p, lmax)}  # the op alone: no input checks/normalisation
    fb_tools = ("geodl", "geodl-4k-pages", "sphericart-torch")
    info = kernel_info()
    print(json.dumps({"kernel": {k: v for k, v in info.items() if k != "path"}}), flush=True)

    def measure(load: str) -> None:
        for lmax in args.lmax:
            fwd = {t: [] for t in tools}
            fb = {t: [] for t in fb_tools}
            with torch.no_grad():
                for fn in tools.values():  # warm-up (tables, lazy imports)
                    fn(lmax, x)
                for _ in range(args.runs):
                    for name, fn in tools.items():
                        t0 = time.perf_counter()
                        fn(lmax, x)
                        fwd[name].append(time.perf_counter() - t0)
            grads = {}
            xg = x.detach().clone().requires_grad_(True)
            for _ in range(args.fb_runs):
                for name in fb_tools:
                    t0 = time.perf_counter()
                    y = tools[name](lmax, xg)
                    if name not in grads:
                        grads[name] = torch.ones_like(y)
                    y.backward(grads[name])
                    fb[name].append(time.perf_counter() - t0)
                    xg.grad = None
                    del y
            for hp in (True, False):
                ours = "geodl" if hp else "geodl-4k-pages"
                cell = {"threads": args.threads, "load": load, "hugepages": hp, "lmax": lmax,
                        "points": args.points, "runs": args.runs, "fb_runs": args.fb_runs,
                        "geodl_forward_ms": _quantiles(fwd[ours]),
                        "sphericart_forward_ms": _quantiles(fwd["sphericart-torch"]),
                        "torch_forward_ms": _quantiles(fwd["geodl-torch-forward"]) if hp else None,
                        "op_forward_ms": _quantiles(fwd["geodl-op"]) if hp else None}
                cell["forward_ratio"] = round(cell["sphericart_forward_ms"]["median"] / cell["geodl_forward_ms"]["median"], 3)
                if hp:
                    cell["op_forward_ratio"] = round(cell["sphericart_forward_ms"]["median"]
                                                     / cell["op_forward_ms"]["median"], 3)
                if args.fb_runs:
                    cell["geodl_fwd_bwd_ms"] = _quantiles(fb[ours])
                    cell["sphericart_fwd_bwd_ms"] = _quantiles(fb["sphericart-torch"])
                    cell["fwd_bwd_ratio"] = round(cell["sphericart_fwd_bwd_ms"]["median"]
                                                  / cell["geodl_fwd_bwd_ms"]["median"], 3)
                print(json.dumps({"cell": cell}), flush=True)

    measure("quiet")
    busy = _busy_process()
    try:
        time.sleep(0.5)  # let it reach its core
        measure("busy")
    finally:
        busy.kill()
        busy.wait()
    return 0


def _table(cells: list[dict]) -> str:
    head = ("threads load  hugepages lmax | geodl fwd ms | sphericart fwd ms | ratio | op alone ratio | "
            "torch-path fwd ms | fwd+bwd ratio")
    lines = [head, "-" * len(head)]
    for c in cells:
        tp = c.get("torch_forward_ms")
        lines.append(f"{c['threads']:>7} {c['load']:<5} {'on' if c['hugepages'] else 'off':>9} {c['lmax']:>4} | "
                     f"{c['geodl_forward_ms']['median']:>12.2f} | {c['sphericart_forward_ms']['median']:>17.2f} | "
                     f"{c['forward_ratio']:>5.2f} | {c.get('op_forward_ratio', float('nan')):>14.2f} | "
                     f"{tp['median'] if tp else float('nan'):>17.2f} | "
                     f"{c.get('fwd_bwd_ratio', float('nan')):>5.2f}")
    return "\n".join(lines)


def _write(cells: list[dict], kernel: dict, args) -> Path:
    """Merge the matrix into sh_cpu.json (the rows of sh_bench.py and its CSV stay as they are)."""
    sys.path.insert(0, str(HERE.parent))
    from geodl.bench import write_results

    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"benchmark": "spherical harmonics"}
    rows = doc.pop("rows", [])
    doc.pop("environment", None)
    ratios = [c["forward_ratio"] for c in cells]
    fb = [c["fwd_bwd_ratio"] for c in cells if "fwd_bwd_ratio" in c]
    doc["busy_matrix"] = {
        "command": "python benchmarks/sh_cpu_busy.py",
        "what": "median (q1, q3, min) wall ms over `runs` forward and `fb_runs` forward+backward calls, "
                "float32, tools round-robin in one process per thread count; ratio = sphericart-torch / geodl "
                "(> 1: geodl faster); busy = one spinning process started by the benchmark; hugepages = geodl's "
                "madvise(MADV_HUGEPAGE) output (off: GEODL_DISABLE_HUGEPAGES=1), sphericart-torch allocates 4 KiB "
                "pages in both; torch_forward_ms = the torch forward the C kernel replaced (GEODL_DISABLE_CPU_KERNEL=1); "
                "op_forward_ms = the op alone on the unit vectors (no input checks/normalisation, as sphericart is called)",
        "cpu_count": os.cpu_count(),
        "kernel": kernel,
        "min_forward_ratio": min(ratios),
        "min_fwd_bwd_ratio": min(fb) if fb else None,
        "geodl_forward_ahead_in_every_cell": all(r >= 1.0 for r in ratios),
        "cells": cells,
    }
    j, _ = write_results(RESULTS, doc, rows)
    return j


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)  # child: one thread count
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--thread-counts", default="1,2")
    p.add_argument("--lmax", default="10,20")
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=11, help="forward calls per tool and cell (median)")
    p.add_argument("--fb-runs", type=int, default=11, help="forward+backward calls per tool and cell (0: skip)")
    p.add_argument("--quick", action="store_true", help="20k points, 3 runs, nothing written")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    args.lmax = [int(v) for v in str(args.lmax).split(",")]
    if args.quick:
        args.points, args.runs, args.fb_runs, args.no_write = 20_000, 3, 3, True
    if args.child:
        return _child(args)
    cells, kernel = [], {}
    t0 = time.time()
    for t in (int(v) for v in args.thread_counts.split(",")):
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        env.pop("GEODL_DISABLE_HUGEPAGES", None)
        env.pop("GEODL_DISABLE_CPU_KERNEL", None)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--threads", str(t),
               "--lmax", ",".join(map(str, args.lmax)), "--points", str(args.points), "--runs", str(args.runs),
               "--fb-runs", str(args.fb_runs)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr[-3000:], file=sys.stderr)
            return 1
        for line in r.stdout.splitlines():
            if line.startswith("{"):
                msg = json.loads(line)
                if "cell" in msg:
                    cells.append(msg["cell"])
                    print(_table([msg["cell"]]).splitlines()[-1], flush=True)
                kernel = msg.get("kernel", kernel)
    cells.sort(key=lambda c: (c["threads"], c["load"] != "quiet", not c["hugepages"], c["lmax"]))
    print(_table(cells))
    print(f"min forward ratio {min(c['forward_ratio'] for c in cells):.2f}; {time.time() - t0:.0f} s")
    if not args.no_write:
        print(f"wrote {_write(cells, kernel, args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
