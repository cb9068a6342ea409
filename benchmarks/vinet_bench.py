"""VI-Net forward cost on the CPU, and the share spent projecting the clouds onto the sphere.

Times, in one run and on the same batch of B = 32 clouds of 1,024 points (``geodl.data.CategoryPoses``
test clouds, float32),

* ``forward``    -- ``VINet(resolution=64)`` (the default channels 32-64-128) in eval mode under
                    ``torch.no_grad()``: projection, SPA-SConv FPN, V-branch, I-branch;
* ``projection`` -- ``spherical_projection`` alone on the same batch at 64 x 64 (what the forward
                    starts with);

round-robin (``benchmarks/_timing.py``: warm-up first, then interleaved timed calls), and reports
the median wall and process-CPU time of each and the projection's share of the forward
(median projection / median forward); also the zero-padded ablation
``VINet(padding="zeros", symmetric=False)`` for the cost of the spherical padding and the
symmetric kernels. Writes ``benchmarks/results/vinet_forward.json``.

Run: ``python benchmarks/vinet_bench.py [--threads 2] [--repeats 7]``.
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
from geodl.data import CategoryPoses  # noqa: E402
from geodl.nn import VINet  # noqa: E402
from geodl.nn.spherical import spherical_projection  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "vinet_forward.json"
B, N, RES = 32, 1024, 64


def run(repeats: int) -> dict:
    ds = CategoryPoses("test", num_points=N, per_category=(B + 5) // 6, seed=0)
    pos = ds.pos[:B].reshape(-1, 3).contiguous()
    batch = torch.arange(B).repeat_interleave(N)
    torch.manual_seed(0)
    nets = {"forward": VINet(RES).eval(), "forward_zeros": VINet(RES, padding="zeros", symmetric=False).eval()}

    def fwd(net):
        def f():
            with torch.no_grad():
                return net(pos, batch, num_graphs=B)["rotation"]
        return f

    def proj():
        with torch.no_grad():
            return spherical_projection(pos, batch, num_graphs=B, resolution=RES)

    fns = {"forward": fwd(nets["forward"]), "projection": proj, "forward_zeros": fwd(nets["forward_zeros"])}
    s = sample(fns, "cpu", repeats=repeats, warmup=2)
    med = {k: {"wall_s": statistics.median(v["wall"]), "cpu_s": statistics.median(v["cpu"]),
               "wall_all_s": v["wall"]} for k, v in s.items()}
    return {
        "batch": B, "points_per_cloud": N, "resolution": [RES, RES], "dtype": "float32",
        "model": "VINet(resolution=64) defaults: channels (32, 64, 128), hidden 32, eval, no_grad",
        "params": sum(p.numel() for p in nets["forward"].parameters()),
        "threads": torch.get_num_threads(), "repeats": repeats, "torch": torch.__version__,
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "times": med,
        "projection_share_wall": med["projection"]["wall_s"] / med["forward"]["wall_s"],
        "projection_share_cpu": med["projection"]["cpu_s"] / med["forward"]["cpu_s"],
        "ms_per_cloud_forward": 1000 * med["forward"]["wall_s"] / B,
        "zeros_over_spherical_wall": med["forward_zeros"]["wall_s"] / med["forward"]["wall_s"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    res = run(args.repeats)
    t = res["times"]
    print(f"VINet forward, B={B} x {N} points, {RES}x{RES}, {res['threads']} thread(s): "
          f"{1000 * t['forward']['wall_s']:.1f} ms wall ({1000 * t['forward']['cpu_s']:.1f} ms CPU); "
          f"projection {1000 * t['projection']['wall_s']:.2f} ms = {100 * res['projection_share_wall']:.1f} % "
          f"of the forward; zero-padded ablation {1000 * t['forward_zeros']['wall_s']:.1f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
