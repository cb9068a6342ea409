"""Speed and accuracy of geodl.ops.eigh3x3 and the neighbour search against their peers, same run.

    python benchmarks/_bench_eigh.py --device cpu|cuda [--quick]

``run(device, quick)`` returns the rows that ``benchmarks/ops_bench.py`` stores in
``results/ops_<device>.json`` (``eigh_rows``). Each row: ``op``, ``size``, ``dtype``, ``unit``,
``geodl`` and ``peer`` throughput (median of repeats after a warm-up), ``peer_name``,
``ratio`` = geodl / peer throughput (> 1: geodl is faster; ``None`` when the peer failed or is
unavailable, with the reason in ``peer_error``), and accuracy fields:

- eigh3x3: ``residual`` = max over a sample of ||A V - V diag(w)||_2 / ||A||_2 (columns, computed in
  float64) for geodl and for the peer; the issue's targets are 1e-5 (float32) and 1e-12 (float64).
  Peer: ``torch.linalg.eigh`` (on CUDA it fails above 65,536 matrices: the failure is recorded).
- knn_graph / radius_graph: points/s; ``agreement`` = fraction of query points whose neighbour set
  equals the peer's. Peers: dense ``torch.cdist`` + ``topk`` (or threshold) per graph, and
  ``torch_geometric.nn.knn_graph`` / ``radius_graph`` when PyG has a back-end for them
  (pyg-lib or torch-cluster), else recorded as unavailable.
- farthest_point_sampling: points/s; peer ``torch_geometric.nn.fps`` (needs torch-cluster).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_time, sample  # noqa: E402

GOAL_EIGH_CUDA = 2000.0  # M matrices/s at B = 1M, float32, one H100 (issue 3)


def _residual(A, w, V, n_sample=20_000) -> float:
    idx = torch.linspace(0, A.shape[0] - 1, min(n_sample, A.shape[0]), device=A.device).long()
    A, w, V = A[idx].double(), w[idx].double(), V[idx].double()
    norm = torch.linalg.matrix_norm(A, ord=2).clamp_min(1e-300)
    res = torch.linalg.vector_norm(A @ V - V * w[:, None, :], dim=-2).amax(-1)
    return float((res / norm).max())


def _err(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def eigh_rows(device: str, quick: bool):
    from geodl.ops import eigh3x3

    rows = []
    sizes = [10_000, 100_000] if quick else [10_000, 1_000_000]
    repeats = 3 if quick else 5
    gen = torch.Generator(device=device).manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for B in sizes:
            X = torch.randn(B, 3, 3, device=device, dtype=dtype, generator=gen)
            A = X + X.mT
            del X
            w, V, _ = eigh3x3(A, validate=False)
            t = median_time(lambda: eigh3x3(A, validate=False), device, repeats)
            row = {"op": "eigh3x3", "size": B, "dtype": str(dtype).replace("torch.", ""), "unit": "M matrices/s",
                   "geodl": round(B / t / 1e6, 3), "peer_name": "torch.linalg.eigh", "residual": _residual(A, w, V)}
            del w, V
            try:
                w_t, V_t = torch.linalg.eigh(A)
                row["peer_residual"] = _residual(A, w_t, V_t)
                del w_t, V_t
                t_p = median_time(lambda: torch.linalg.eigh(A), device, 1 if B > 100_000 else 3)
                row["peer"] = round(B / t_p / 1e6, 3)
                row["ratio"] = round(t_p / t, 3)
            except Exception as exc:  # torch's cuSOLVER path fails above 65,536 matrices
                row.update(peer=None, ratio=None, peer_error=_err(exc))
                if device == "cuda":
                    torch.cuda.empty_cache()
            if device == "cuda" and dtype == torch.float32 and B == 1_000_000:
                row["goal"] = f">= {GOAL_EIGH_CUDA:g} M matrices/s"
                row["goal_met"] = row["geodl"] >= GOAL_EIGH_CUDA
            rows.append(row)
            del A
    return rows


def _dense_knn(pos_g, k):
    """Peer: per-graph dense cdist + topk (self excluded), for equal-size graphs (G, n, d)."""
    D = torch.cdist(pos_g, pos_g)
    D.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return D.topk(k, dim=-1, largest=False).indices


def _dense_radius(pos_g, r):
    D = torch.cdist(pos_g, pos_g)
    D.diagonal(dim1=-2, dim2=-1).fill_(float("inf"))
    return D <= r


def _sets_from_edges(edge_index, N):
    """Per target, the sorted tuple of its sources."""
    order = torch.argsort(edge_index[1] * N + edge_index[0])
    src, dst = edge_index[0][order].tolist(), edge_index[1][order].tolist()
    sets = [[] for _ in range(N)]
    for s, d in zip(src, dst):
        sets[d].append(s)
    return [tuple(x) for x in sets]


def _pyg(name):
    try:
        import torch_geometric.typing as tgt
        from torch_geometric import nn as pyg_nn
    except ImportError as exc:
        return None, _err(exc)
    has = getattr(tgt, "WITH_TORCH_CLUSTER", False) or (name != "fps" and getattr(tgt, "WITH_KNN", False))
    if not has:
        return None, "unavailable: PyG needs pyg-lib or torch-cluster for this op (neither installed)"
    return getattr(pyg_nn, name), None


def _neighbor_setup(device, G, n):
    gen = torch.Generator(device=device).manual_seed(1)
    pos = torch.rand(G * n, 3, device=device, generator=gen)
    return pos, torch.arange(G, device=device).repeat_interleave(n)


def _paired(device, repeats, ours, peer):
    """Median times of ``ours`` and ``peer`` timed alternately (a load change hits both alike), and the
    median over rounds of peer time / our time."""
    s = sample({"ours": ours, "peer": peer}, device, repeats)
    t_o, t_p = s["ours"]["wall"], s["peer"]["wall"]
    return statistics.median(t_o), statistics.median(t_p), statistics.median(p / o for o, p in zip(t_o, t_p))


def _graph_rows(device, G, n, k, r, repeats):
    """knn_graph and radius_graph on G graphs of n uniform points in the unit cube."""
    from geodl.ops import knn_graph, radius_graph

    rows = []
    N = G * n
    pos, batch = _neighbor_setup(device, G, n)
    pos_g = pos.view(G, n, 3)
    offset = (torch.arange(G, device=device) * n)[:, None, None]
    for op, ours, dense, pyg_call in (
        ("knn_graph", lambda: knn_graph(pos, k, batch), lambda: _dense_knn(pos_g, k), lambda f: f(pos, k, batch)),
        ("radius_graph", lambda: radius_graph(pos, r, batch), lambda: _dense_radius(pos_g, r),
         lambda f: f(pos, r, batch, max_num_neighbors=n)),
    ):
        t, t_d, ratio = _paired(device, repeats, ours, dense)
        e = ours()
        mine = _sets_from_edges(e.cpu(), N)
        d = dense()
        if op == "knn_graph":
            theirs = [tuple(sorted(x)) for x in (d + offset).reshape(N, k).tolist()]
        else:
            gi, qi, si = d.nonzero(as_tuple=True)
            theirs = _sets_from_edges(torch.stack([gi * n + si, gi * n + qi]).cpu(), N)
        agree = sum(a == b for a, b in zip(mine, theirs)) / N
        del d
        label = f"{G} graphs x {n} points" + (f", k={k}" if op == "knn_graph" else f", r={r}")
        base = {"op": op, "size": label, "dtype": "float32", "unit": "M points/s", "geodl": round(N / t / 1e6, 3)}
        rows.append({**base, "peer_name": "torch.cdist + topk" if op == "knn_graph" else "torch.cdist + threshold",
                     "peer": round(N / t_d / 1e6, 3), "ratio": round(ratio, 3), "agreement": agree,
                     "edges": int(e.shape[1])})
        fn, why = _pyg(op)
        row = {**base, "peer_name": f"torch_geometric.nn.{op}"}
        if fn is None:
            row.update(peer=None, ratio=None, peer_error=why)
        else:
            t_p = median_time(lambda: pyg_call(fn), device, repeats)
            row.update(peer=round(N / t_p / 1e6, 3), ratio=round(t_p / t, 3))
        rows.append(row)
    return rows


def neighbor_rows(device: str, quick: bool, repeats: int = 3):
    """Rows for knn_graph / radius_graph (two shapes: many small graphs, one large) and FPS.

    ``agreement`` below 1 for knn is expected where the peer's float32 ``cdist`` rounding reorders
    near-equal distances at the k-th neighbour; geodl's answer is the exact one (see its tests).
    """
    from geodl.ops import farthest_point_sampling

    G, n, k = (4, 512, 16) if quick else (16, 1024, 16)
    if device == "cuda" and not quick:
        G = 64
    rows = _graph_rows(device, G, n, k, 0.1, repeats)
    if not quick:
        rows += _graph_rows(device, 1, 8192, k, 0.05, repeats)

    pos, batch = _neighbor_setup(device, G, n)
    ratio_fps = 0.25
    t = median_time(lambda: farthest_point_sampling(pos, ratio_fps, batch), device, repeats)
    row = {"op": "farthest_point_sampling", "size": f"{G} graphs x {n} points, ratio {ratio_fps}", "dtype": "float32",
           "unit": "M points/s", "geodl": round(G * n / t / 1e6, 3), "peer_name": "torch_geometric.nn.fps"}
    fn, why = _pyg("fps")
    if fn is None:
        row.update(peer=None, ratio=None, peer_error=why)
    else:
        t_p = median_time(lambda: fn(pos, batch, ratio_fps, random_start=False), device, repeats)
        row.update(peer=round(G * n / t_p / 1e6, 3), ratio=round(t_p / t, 3))
    rows.append(row)
    return rows


def run(device: str, quick: bool) -> list[dict]:
    """All rows for ``device`` ('cpu' or 'cuda'); ``quick`` uses smaller sizes."""
    return eigh_rows(device, quick) + neighbor_rows(device, quick)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["eigh", "neighbors"], default=None)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per op (median); neighbours only")
    args = ap.parse_args(argv)
    if args.only == "eigh":
        rows = eigh_rows(args.device, args.quick)
    elif args.only == "neighbors":
        rows = neighbor_rows(args.device, args.quick, args.repeats)
    else:
        rows = run(args.device, args.quick)
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
