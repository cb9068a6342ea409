"""Training-step time of FA-GNN and the EGNN baseline at the n-body benchmark's sizes, eager and captured.

One Adam step on a batch of 100 five-body systems (the benchmark's batch), after warm-up, median of
``--steps``; every variant timed in the same run (round-robin). Variants (``--modes``):

- ``eager``: the call the benchmark makes (``model(loc, vel, q, graph)``: the default fully connected
  graph and the value checks, both host reads; FA-GNN with ``degeneracy="warn"``);
- ``syncfree``: the same step given ``num_graphs=`` and ``edge_index=`` (FA-GNN with
  ``degeneracy="flag"``): nothing is read on the host in forward or backward
  (``tests/nn/frame_averaging/test_sync_free.py``);
- ``graphs`` (CUDA only): that step -- forward, backward and ``Adam(capturable=True)`` -- captured once
  with ``torch.cuda.graph`` and replayed on static input buffers.

Before timing, ``graphs`` is checked against ``syncfree`` from the same initial weights: after
``--check-steps`` steps on the same batches the largest parameter difference is recorded
(``max_param_diff``; the same numbers up to float32 reduction order). Prints and writes the time per
step, per epoch (30 steps: 3,000 training systems), the projection for the papers' 10,000 epochs, and
the ratios against eager.

    python benchmarks/nbody_step_time.py --device cuda --out benchmarks/results/nbody_step_cuda.json
    python benchmarks/nbody_step_time.py --device cpu --modes eager,syncfree      # what runs here
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import sample  # noqa: E402

from geodl.bench.tasks.nbody import build_model  # noqa: E402
from geodl.nn.backbones import full_graph_edges  # noqa: E402

MODES = ("eager", "syncfree", "graphs")
B, N = 100, 5


def _batch(dev, seed=0):
    g = torch.Generator().manual_seed(seed)
    loc, vel = torch.randn(B * N, 3, generator=g), torch.randn(B * N, 3, generator=g)
    q = torch.where(torch.rand(B * N, 1, generator=g) < 0.5, -1.0, 1.0)
    tgt = loc + vel + 0.1 * torch.randn(B * N, 3, generator=g)
    return [t.to(dev) for t in (loc, vel, q, tgt)]


def _model(name, mode, dev):
    torch.manual_seed(0)
    kw = {"degeneracy": "flag"} if (name == "FA-GNN" and mode != "eager") else {}
    return build_model(name, **kw).to(dev)


def eager_step(model, opt, graph):
    def step(loc, vel, q, tgt):
        loss = torch.nn.functional.mse_loss(model(loc, vel, q, graph), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def syncfree_step(model, opt, graph, edge_index):
    def step(loc, vel, q, tgt):
        out = model(q, loc, graph, vel=vel, num_graphs=B, edge_index=edge_index)
        loss = torch.nn.functional.mse_loss(out, tgt)
        opt.zero_grad(set_to_none=False)  # keep the .grad buffers: their addresses must not change
        loss.backward()
        opt.step()
        return loss

    return step


def captured_step(model, graph, edge_index, dev, lr):
    """The sync-free step captured by ``torch.cuda.graph``; returns ``(replay(loc, vel, q, tgt), opt)``."""
    opt = torch.optim.Adam(model.parameters(), lr, capturable=True)
    step = syncfree_step(model, opt, graph, edge_index)
    static = [t.clone() for t in _batch(dev)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream (allocator, optimizer state), as the docs ask
        for _ in range(3):
            step(*static)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        loss = step(*static)

    def replay(loc, vel, q, tgt):
        for s, t in zip(static, (loc, vel, q, tgt)):
            s.copy_(t)
        g.replay()
        return loss

    return replay, opt


def _check_graphs(name, dev, lr, steps):
    """Largest parameter difference between ``steps`` captured and ``steps`` sync-free eager steps from the
    same weights and optimizer state (the captured model ran 3 real warm-up steps on the first batch; the
    capture itself records kernels without running them)."""
    graph = torch.arange(B, device=dev).repeat_interleave(N)
    ei = full_graph_edges(graph)
    a = _model(name, "syncfree", dev)
    b = copy.deepcopy(a)
    replay, _ = captured_step(a, graph, ei, dev, lr)
    ref = syncfree_step(b, torch.optim.Adam(b.parameters(), lr, capturable=True), graph, ei)
    first = _batch(dev)
    for _ in range(3):
        ref(*first)
    for k in range(steps):
        batch = _batch(dev, seed=k + 1)
        replay(*batch)
        ref(*batch)
    torch.cuda.synchronize()
    return max(float((p - r).abs().max()) for p, r in zip(a.parameters(), b.parameters()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--check-steps", type=int, default=5)
    ap.add_argument("--modes", default=None, help=f"comma-separated subset of {list(MODES)} "
                                                  "(default: all on CUDA, eager and syncfree elsewhere)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    modes = args.modes.split(",") if args.modes else (list(MODES) if dev.type == "cuda" else ["eager", "syncfree"])
    bad = [m for m in modes if m not in MODES]
    if bad:
        ap.error(f"--modes: unknown {bad}; expected a subset of {list(MODES)}")
    if "graphs" in modes and dev.type != "cuda":
        ap.error("--modes: graphs needs a CUDA device (--device cuda)")
    loc, vel, q, tgt = _batch(dev)
    graph = torch.arange(B, device=dev).repeat_interleave(N)
    ei = full_graph_edges(graph)
    fns, checks = {}, {}
    for name in ("FA-GNN", "EGNN"):
        lr = 1e-3
        for mode in modes:
            model = _model(name, mode, dev)
            if mode == "eager":
                step = eager_step(model, torch.optim.Adam(model.parameters(), lr), graph)
            elif mode == "syncfree":
                step = syncfree_step(model, torch.optim.Adam(model.parameters(), lr), graph, ei)
            else:
                step, _ = captured_step(model, graph, ei, dev, lr)
                checks[name] = _check_graphs(name, dev, lr, args.check_steps)
            fns[f"{name}/{mode}"] = (lambda s=step: s(loc, vel, q, tgt))
    times = sample(fns, dev, args.steps, warmup=5)
    rows = []
    for key, t in times.items():
        name, mode = key.split("/")
        ms = statistics.median(t["wall"]) * 1e3
        rows.append({"model": name, "mode": mode, "ms_per_step": round(ms, 4), "s_per_epoch": round(ms * 30 / 1e3, 3),
                     "hours_for_10000_epochs": round(ms * 30 * 10000 / 3.6e6, 3)})
    eager = {r["model"]: r["ms_per_step"] for r in rows if r["mode"] == "eager"}
    for r in rows:
        if r["model"] in eager:
            r["speedup_vs_eager"] = round(eager[r["model"]] / r["ms_per_step"], 2)
        if r["mode"] == "graphs":
            r["max_param_diff_vs_syncfree"] = checks[r["model"]]
            r["goal_ms"] = 2.0
            r["goal_met"] = r["ms_per_step"] <= 2.0
        print(r, flush=True)
    info = {"device": str(dev), "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": B, "modes": modes,
            "rows": rows, "note": "training steps only (no evaluation passes); an epoch is 30 steps; "
                                  "eager = the benchmark's call, syncfree = sizes given + degeneracy='flag', "
                                  "graphs = syncfree captured by torch.cuda.graph"}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
