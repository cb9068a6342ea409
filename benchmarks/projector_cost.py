"""What building the soft-equivariance projector costs: 64 -> 64 channels of vectors, O(3) and O(2)_z + scaling.

For ``equivariant_basis(Rep("64xvectors"), Rep("64xvectors"), group)`` with empty caches, measures in one run

* ``build``: wall time of the first (uncached) construction (median over ``--repeats`` rebuilds, each
  after clearing the caches), the Python heap peak during it (``tracemalloc``), the bytes of the
  tensors the basis holds (``EquivariantBasis.nbytes``) and the growth of the process's peak RSS
  (an upper bound on every transient allocation, torch's included);
* ``cache_hit``: the wall time of a second call (the lru cache);
* ``project``: one ``project(W)`` on a random ``(192, 192)`` weight (float64 and float32) and one
  ``projection_penalty`` with its backward;
* ``dense``: the reference construction that the structured one avoids: the stacked ``d²×d²``
  constraint of the whole map (``ρ_out(A) ⊗ I - I ⊗ ρ_in(A)ᵀ`` per Lie generator, ``ρ_out(h) ⊗ ρ_in(h) - I`` per
  discrete generator, scaling as a diagonal generator), its SVD null space and the dense
  ``P = Q Qᵀ``, on 4xvectors -> 4xvectors (d = 12, d² = 144) against the structured build of the same
  size, the ratio reported, and the memory the dense route would need at 64 channels
  (the ``d²×d²`` projector alone: ``(192²)² · 8`` bytes).

Goals (issue 13): build under 1 s and under 100 MB. Writes ``benchmarks/results/projector_cost.json``.

Run: ``python benchmarks/projector_cost.py [--threads 2] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from geodl._io import atomic_write_text  # noqa: E402
from geodl.nn.soft_equivariance import Rep, candidate_group, equivariant_basis, projection_penalty  # noqa: E402
from geodl.nn.soft_equivariance import _projector  # noqa: E402
from geodl.nn.soft_equivariance._reps import _base_degree, _base_lie, _base_matrix  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "projector_cost.json"
GROUPS = ("O3", "O2z+scale")
CHANNELS = 64
DENSE_CHANNELS = 4
GOAL_S, GOAL_MB = 1.0, 100.0


def _clear():
    _projector._pair_basis.cache_clear()
    _projector._cached_basis.cache_clear()


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _rep_lie(rep: Rep, A: torch.Tensor) -> torch.Tensor:
    mats = [torch.kron(torch.eye(m, dtype=torch.float64), _base_lie(b, A)) for m, b in rep.blocks]
    return torch.block_diag(*mats)


def _rep_degrees(rep: Rep) -> torch.Tensor:
    return torch.cat([torch.full((m * Rep(b).dim,), float(_base_degree(b)), dtype=torch.float64)
                      for m, b in rep.blocks])


def dense_projector(rep_in: Rep, rep_out: Rep, group: str) -> torch.Tensor:
    """The dense route: the whole d²×d² constraint, its null space by SVD, P = Q Qᵀ (d², d²)."""
    G = candidate_group(group)
    di, do = rep_in.dim, rep_out.dim
    D = di * do
    Ii, Io = torch.eye(di, dtype=torch.float64), torch.eye(do, dtype=torch.float64)
    rows = []
    for A in G.lie_algebra():
        rows.append(torch.kron(_rep_lie(rep_out, A), Ii) - torch.kron(Io, _rep_lie(rep_in, A).T.contiguous()))
    if G.scaling:
        rows.append(torch.kron(torch.diag(_rep_degrees(rep_out)), Ii) - torch.kron(Io, torch.diag(_rep_degrees(rep_in))))
    for h in G.discrete():
        rows.append(torch.kron(rep_out.matrix(h), rep_in.matrix(h)) - torch.eye(D, dtype=torch.float64))
    C = torch.cat(rows)
    _, S, Vh = torch.linalg.svd(C, full_matrices=True)
    k = int((S > 1e-8 * max(1.0, float(S.max()))).sum())
    Q = Vh[k:].T
    return Q @ Q.T


def _median(xs):
    return statistics.median(xs)


def measure_group(group: str, repeats: int) -> dict:
    rep = Rep(f"{CHANNELS}xvectors")
    times = []
    for _ in range(repeats):
        _clear()
        t0 = time.perf_counter()
        equivariant_basis(rep, rep, group)
        times.append(time.perf_counter() - t0)
    _clear()
    rss0 = _maxrss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    B = equivariant_basis(rep, rep, group)
    first = time.perf_counter() - t0
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = max(0, _maxrss_bytes() - rss0)
    hits = []
    for _ in range(max(repeats, 20)):
        t0 = time.perf_counter()
        assert equivariant_basis(rep, rep, group) is B
        hits.append(time.perf_counter() - t0)
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(rep.dim, rep.dim, dtype=torch.float64, generator=gen)
    W32 = W.float()
    proj = {}
    for name, w in (("float64", W), ("float32", W32)):
        B.project(w)
        ts = []
        for _ in range(max(repeats, 20)):
            t0 = time.perf_counter()
            B.project(w)
            ts.append(time.perf_counter() - t0)
        proj[name] = _median(ts)
    ts = []
    for _ in range(max(repeats, 10)):
        w = W32.clone().requires_grad_(True)
        t0 = time.perf_counter()
        projection_penalty(w, None, rep, rep, group).backward()
        ts.append(time.perf_counter() - t0)
    held = B.nbytes
    worst_mb = max(heap_peak, held, rss_growth) / 2**20
    build_s = _median(times)
    return {
        "group": group, "rep_in": str(rep), "rep_out": str(rep), "dim": rep.dim, "rank": B.rank,
        "pairs": [list(p) for p in B.pairs],
        "build_s_median": build_s, "build_s_all": times, "build_s_traced": first,
        "heap_peak_bytes": heap_peak, "tensors_held_bytes": held, "peak_rss_growth_bytes": rss_growth,
        "memory_mb_worst_of_three": worst_mb,
        "cache_hit_s_median": _median(hits),
        "project_s_median": proj, "penalty_forward_backward_float32_s_median": _median(ts),
        "goal_build_under_s": GOAL_S, "goal_memory_under_mb": GOAL_MB,
        "meets_goal": bool(build_s < GOAL_S and worst_mb < GOAL_MB),
    }


def measure_dense(group: str, repeats: int) -> dict:
    rep = Rep(f"{DENSE_CHANNELS}xvectors")
    dense_t, struct_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        P = dense_projector(rep, rep, group)
        dense_t.append(time.perf_counter() - t0)
        _clear()
        t0 = time.perf_counter()
        B = equivariant_basis(rep, rep, group)
        struct_t.append(time.perf_counter() - t0)
    Q = B.basis_dense()
    agree = float((P - Q @ Q.T).abs().max())
    d = rep.dim
    big = CHANNELS * 3
    return {
        "group": group, "rep": str(rep), "d": d, "d2": d * d,
        "dense_s_median": _median(dense_t), "structured_s_median": _median(struct_t),
        "dense_over_structured": _median(dense_t) / _median(struct_t),
        "dense_projector_bytes": P.numel() * 8, "structured_bytes": B.nbytes,
        "max_abs_difference_of_projectors": agree,
        "dense_projector_bytes_at_64_channels": (big * big) ** 2 * 8,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    # warm-up: imports and the first SVD call outside the measurements
    equivariant_basis("sh1", "sh2+vectors", "O3")
    dense_projector(Rep("vectors"), Rep("vectors"), "O3")
    rows = [measure_group(g, args.repeats) for g in GROUPS]
    dense = [measure_dense(g, args.repeats) for g in GROUPS]
    result = {
        "benchmark": "projector_cost", "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "processor": platform.processor(), "threads": args.threads,
        "repeats": args.repeats, "structured": rows, "dense_reference": dense,
        "all_goals_met": all(r["meets_goal"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(f"{r['group']:>10}: build {r['build_s_median'] * 1e3:.2f} ms, memory (worst of heap/held/RSS) "
              f"{r['memory_mb_worst_of_three'] * 1024:.1f} KiB, cache hit {r['cache_hit_s_median'] * 1e6:.1f} us, "
              f"project {r['project_s_median']['float64'] * 1e3:.3f} ms (f64), rank {r['rank']}")
    for d in dense:
        print(f"{d['group']:>10} dense 4xvectors: {d['dense_s_median'] * 1e3:.2f} ms vs structured "
              f"{d['structured_s_median'] * 1e3:.2f} ms (x{d['dense_over_structured']:.1f}); dense P at 64 ch "
              f"would be {d['dense_projector_bytes_at_64_channels'] / 2**30:.1f} GiB")
    return result


if __name__ == "__main__":
    main()
