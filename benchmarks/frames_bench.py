"""Cost of computing PCA frames relative to a PointNet forward pass (goal: <= 5 %).

Times, on the same inputs and in the same run, at B = 32 clouds of N = 1024 points (float32):

* ``frames``          -- ``geodl.nn.frames(pos, batch, "E3")`` (centroids, second moments,
                         eigendecomposition, 8 sign patterns, degeneracy check);
* ``pointnet``        -- one forward of ``geodl.nn.PointNet`` (shared MLP 3-64-128-1024, max pool,
                         head 1024-256-128-40) on the same batch;
* ``fa_pointnet``     -- the full ``FrameAveraging(PointNet, "E3")`` forward (8 frames folded in).

Reports ``frames / pointnet`` (the goal) and ``frames / fa_pointnet``, writes
``benchmarks/results/frames_<device>.json``. Run: ``python benchmarks/frames_bench.py
[--device cpu|cuda] [--threads 1] [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import wall_times  # noqa: E402

from geodl.nn import FrameAveraging, PointNet, frames  # noqa: E402

GOAL = 0.05


def _time(fn, device: str, repeats: int, warmup: int = 2) -> dict:
    times = wall_times(fn, device, repeats, warmup)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def run(device: str = "cpu", B: int = 32, N: int = 1024, repeats: int = 10, fa_repeats: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    pos = (torch.randn(B * N, 3, generator=g) * torch.tensor([1.0, 2.0, 3.0])).to(device)
    batch = torch.arange(B).repeat_interleave(N).to(device)
    torch.manual_seed(0)
    net = PointNet(out_channels=40, hidden_channels=(64, 128, 1024), head_channels=(256, 128)).to(device).eval()
    fa = FrameAveraging(net, group="E3").eval()
    with torch.inference_mode():
        rows = {
            "frames": _time(lambda: frames(pos, batch, "E3", num_graphs=B), device, repeats),
            "frames_flag": _time(lambda: frames(pos, batch, "E3", num_graphs=B, degeneracy="flag"), device, repeats),
            "pointnet": _time(lambda: net(None, pos, batch), device, repeats),
            "fa_pointnet": _time(lambda: fa(pos=pos, batch=batch), device, fa_repeats, warmup=1),
        }
    ratio = rows["frames"]["median_s"] / rows["pointnet"]["median_s"]
    return {
        "benchmark": "frames cost vs PointNet forward",
        "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "B": B,
        "N": N,
        "dtype": "float32",
        "timings": rows,
        "ratio_frames_to_pointnet": ratio,
        "ratio_frames_to_fa_pointnet": rows["frames"]["median_s"] / rows["fa_pointnet"]["median_s"],
        "goal": GOAL,
        "goal_met": ratio <= GOAL,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/frames_<device>.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.device, repeats=args.repeats)
    for name, row in result["timings"].items():
        print(f"{name:12s} {row['median_s'] * 1e3:10.2f} ms (median of {row['repeats']})")
    print(f"frames / PointNet forward = {result['ratio_frames_to_pointnet']:.4f} (goal <= {GOAL}) "
          f"-> {'met' if result['goal_met'] else 'NOT met'}; frames / FA forward = {result['ratio_frames_to_fa_pointnet']:.5f}")
    out = Path(args.out or Path(__file__).resolve().parent / "results" / f"frames_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
