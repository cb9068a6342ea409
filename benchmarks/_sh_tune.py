"""Block size / warp count sweep of geodl's Triton SH kernel on CUDA (1M points, float32).

    python benchmarks/_sh_tune.py --out sh_tune.json
Prints and writes the median forward time per (lmax, BLOCK, num_warps); used to pick the defaults
of ``geodl.ops._triton_sh.sh_real_triton``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import wall_times  # noqa: E402

from geodl.ops._triton_sh import sh_real_triton  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--points", type=int, default=1_000_000)
    args = ap.parse_args()
    x = torch.randn(args.points, 3, device="cuda")
    x = x / x.norm(dim=1, keepdim=True)
    rows = []
    for lmax in (10, 40):
        for block in (64, 128, 256, 512):
            for warps in (1, 2, 4, 8):
                if block < 32 * warps:
                    continue
                t = statistics.median(wall_times(lambda: sh_real_triton(x, lmax, block, warps), "cuda", 20, 2))
                rows.append({"lmax": lmax, "block": block, "num_warps": warps, "forward_ms": round(t * 1e3, 4)})
                print(rows[-1], flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
