"""TinvNN coordinates: the exact classical-MDS route against the O(N) covariance route.

Times, in one run and on the same float64 clouds of N = 256, 512, 1024, 2048, 4096 points,

* ``mds``        -- ``tinv_coordinates(pos, method="mds")``: the N x N double-centred Gram matrix
                    and its full eigendecomposition (``torch.linalg.eigh``), the reference;
* ``covariance`` -- ``tinv_coordinates(pos)``: one 3 x 3 covariance and ``geodl.ops.eigh3x3``,

reports the median wall and process-CPU time of each (``benchmarks/_timing.py``: warm-up first, then
timed calls),
their ratio (goal: the covariance route >= 1000x faster at N = 4096) and the largest difference of
the two routes' coordinates; then what the coordinates cost in training, ``tinv_coordinates`` on
B = 32 clouds of 1024 points (float32) against one PointNet forward (64-128-1024, head 256-128-40)
on the same batch; writes ``benchmarks/results/tinv_mds.json``.

Run: ``python benchmarks/tinv_bench.py [--threads 2] [--repeats 3] [--fast-repeats 50]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import sample  # noqa: E402

from geodl._io import atomic_write_text  # noqa: E402
from geodl.nn import tinv_coordinates  # noqa: E402

SIZES = (256, 512, 1024, 2048, 4096)
GOAL = 1000.0
OUT = Path(__file__).resolve().parent / "results" / "tinv_mds.json"


def _cloud(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    return x + 0.2 * x**2  # skewed: every column's sign is well defined


def _stats(fn, repeats, warmup):
    """Median wall and process-CPU seconds (the CPU time is steadier on a shared machine)."""
    t = sample({"fn": fn}, "cpu", repeats, warmup)["fn"]
    return {"median_s": statistics.median(t["wall"]), "min_s": min(t["wall"]),
            "cpu_median_s": statistics.median(t["cpu"]), "repeats": repeats}


def run(sizes=SIZES, repeats: int = 3, fast_repeats: int = 50) -> dict:
    rows = []
    with torch.inference_mode():
        for n in sizes:
            pos = _cloud(n)
            exact = tinv_coordinates(pos, method="mds", degeneracy="raise")
            fast = tinv_coordinates(pos, degeneracy="raise")
            diff = float((exact.coords - fast.coords).abs().max())
            t_mds = _stats(lambda: tinv_coordinates(pos, method="mds"), repeats, warmup=1)
            t_cov = _stats(lambda: tinv_coordinates(pos), fast_repeats, warmup=3)
            rows.append({"N": n, "mds": t_mds, "covariance": t_cov,
                         "ratio": t_mds["median_s"] / t_cov["median_s"],
                         "cpu_ratio": t_mds["cpu_median_s"] / t_cov["cpu_median_s"], "max_abs_diff": diff})
            print(f"N={n:5d}  mds {t_mds['median_s'] * 1e3:10.2f} ms  covariance {t_cov['median_s'] * 1e3:8.3f} ms  "
                  f"ratio {rows[-1]['ratio']:9.1f} (CPU time {rows[-1]['cpu_ratio']:9.1f})  max|diff| {diff:.2e}", flush=True)
    last = rows[-1]
    return {
        "benchmark": "TinvNN coordinates: exact MDS vs the O(N) covariance route (float64, one cloud)",
        "device": "cpu",
        "device_name": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
        "goal": f"covariance route >= {GOAL:g}x faster than exact MDS at N = {last['N']}",
        "ratio_at_largest": last["ratio"],
        "cpu_ratio_at_largest": last["cpu_ratio"],
        "goal_met": last["ratio"] >= GOAL,
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
    }


def batch_cost(B: int = 32, N: int = 1024, repeats: int = 10) -> dict:
    """``tinv_coordinates`` on a batch against one PointNet forward on it (float32, as in training)."""
    from geodl.nn import PointNet

    g = torch.Generator().manual_seed(1)
    pos = _cloud(B * N, 1).float()
    pos = pos + 0.01 * torch.randn(pos.shape, generator=g)
    batch = torch.arange(B).repeat_interleave(N)
    torch.manual_seed(0)
    net = PointNet(out_channels=40, hidden_channels=(64, 128, 1024), head_channels=(256, 128)).eval()
    with torch.inference_mode():
        t = sample({"tinv_coordinates": lambda: tinv_coordinates(pos, batch, num_graphs=B, degeneracy="flag"),
                    "pointnet": lambda: net(None, pos, batch, num_graphs=B)}, "cpu", repeats, warmup=2)
    med = {k: statistics.median(v["wall"]) for k, v in t.items()}
    return {"B": B, "N": N, "dtype": "float32", "tinv_coordinates_median_s": med["tinv_coordinates"],
            "pointnet_median_s": med["pointnet"], "fraction": med["tinv_coordinates"] / med["pointnet"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of the exact MDS route per size")
    ap.add_argument("--fast-repeats", type=int, default=50, help="timed calls of the covariance route per size")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(tuple(args.sizes), args.repeats, args.fast_repeats)
    res["batch_cost"] = cost = batch_cost()
    print(f"B={cost['B']} clouds of N={cost['N']} (float32): tinv_coordinates {cost['tinv_coordinates_median_s'] * 1e3:.1f} ms, "
          f"PointNet forward {cost['pointnet_median_s'] * 1e3:.1f} ms ({100 * cost['fraction']:.1f} %)")
    res["command"] = "python benchmarks/tinv_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    print(f"ratio at N={res['rows'][-1]['N']}: {res['ratio_at_largest']:.0f}x (goal {GOAL:g}x: "
          f"{'met' if res['goal_met'] else 'NOT met'}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
