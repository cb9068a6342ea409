"""Training-step time of FA-GNN and the EGNN baseline at the n-body benchmark's sizes.

One Adam step on a batch of 100 five-body systems (the benchmark's batch), after warm-up, median
of ``--steps``; both models timed in the same run (round-robin). Prints and writes the time per
step, per epoch (30 steps: 3,000 training systems) and the projection for the papers' 10,000
epochs, i.e. what a full-length reproduction would cost on this device.

    python benchmarks/nbody_step_time.py --device cuda --out benchmarks/results/nbody_step_cuda.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import sample  # noqa: E402

from geodl.bench.tasks.nbody import build_model  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    b, n = 100, 5
    loc, vel = torch.randn(b * n, 3, generator=g), torch.randn(b * n, 3, generator=g)
    q = torch.where(torch.rand(b * n, 1, generator=g) < 0.5, -1.0, 1.0)
    tgt = loc + vel + 0.1 * torch.randn(b * n, 3, generator=g)
    loc, vel, q, tgt = (t.to(dev) for t in (loc, vel, q, tgt))
    graph = torch.arange(b, device=dev).repeat_interleave(n)
    fns = {}
    for name in ("FA-GNN", "EGNN"):
        torch.manual_seed(0)
        model = build_model(name).to(dev)
        opt = torch.optim.Adam(model.parameters(), 1e-3)

        def step(model=model, opt=opt):
            loss = torch.nn.functional.mse_loss(model(loc, vel, q, graph), tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fns[name] = step
    times = sample(fns, dev, args.steps, warmup=5)
    rows = []
    for name, t in times.items():
        ms = statistics.median(t["wall"]) * 1e3
        rows.append({"model": name, "ms_per_step": round(ms, 3), "s_per_epoch": round(ms * 30 / 1e3, 3),
                     "hours_for_10000_epochs": round(ms * 30 * 10000 / 3.6e6, 2)})
        print(rows[-1], flush=True)
    info = {"device": str(dev), "device_name": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": b, "rows": rows,
            "note": "training steps only (no evaluation passes); an epoch is 30 steps"}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
