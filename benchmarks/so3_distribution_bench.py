"""SO3Distribution.log_prob on the recursion-5 HEALPix grid (2,359,296 rotations): time and peak memory.

One ``log_prob`` of a batch of 16 distributions (lmax 6, float32, CPU) at a few chunk sizes. Each
chunk size runs in a fresh subprocess so that its peak is its own: peak memory is the growth of the
process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which the kernel
tracks exactly) over the resident set just before the call, after torch, the coefficients and the
queries exist. The first call includes building the grid (``so3_healpix_grid``: ~570 bytes per
rotation while it is built in float64, then the cached float64 grid, 170 MB, and its float32 copy,
85 MB); a second call (grid cached) is timed and measured on its own (the kernel's peak counter
reset through ``/proc/self/clear_refs``), which is the chunked evaluation alone.
On a CUDA machine (``--device cuda``) the peak is ``torch.cuda.max_memory_allocated`` instead.

The unchunked evaluation is computed, not allocated: the ``(N, 455)`` flattened Wigner-D of the grid,
the recursion's temporaries for all N rotations at once (~16 (2 lmax + 1)² values per rotation, the
estimate of ``geodl.groups.wigner_D_chunks``) and the ``(16, N)`` logits.

    python benchmarks/so3_distribution_bench.py            # writes benchmarks/results/so3_distribution.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "so3_distribution.json"
NOTE = ("wall times are of one CPU thread on a 2-core machine shared with other jobs: noisy (the same call took "
        "30-94 s across runs); the first call's peak is dominated by building the grid (so3_healpix_grid, ~570 bytes "
        "per rotation in float64), the cached-grid peak is the chunked evaluation alone")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    """Peak resident set (VmHWM) since the last :func:`_reset_hwm`."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(chunk: int, rec: int, lmax: int, batch: int, device: str) -> dict:
    import resource
    import time

    import torch

    from geodl.groups import random_rotation, so3_fourier_width
    from geodl.nn.pose import SO3Distribution

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    coeffs = (torch.randn(batch, so3_fourier_width(lmax), generator=g) * 0.3).to(device)
    R = random_rotation(batch, generator=g).to(device)
    dist = SO3Distribution(coeffs, lmax, rec=rec, chunk_size=chunk)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_bytes()
    t0 = time.perf_counter()
    with torch.no_grad():
        lp = dist.log_prob(R)  # builds (and caches) the grid first
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - t0
    peak_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux: whole-process peak
    _malloc_trim()  # hand the grid build's freed pages back, so that the next peak is the evaluation's own
    base2 = _rss_bytes()
    reset = _reset_hwm()
    t0 = time.perf_counter()
    with torch.no_grad():
        lp2 = dist.log_prob(R)  # the grid cached: the chunked evaluation alone
    if device == "cuda":
        torch.cuda.synchronize()
    second = time.perf_counter() - t0
    peak_second = _hwm_bytes() if reset else None
    out = {"chunk_size": chunk, "seconds_first_call": round(first, 3), "seconds_cached_grid": round(second, 3),
           "rss_before_mb": round(base / 2**20, 1),
           "first_call_peak_rss_mb": round(peak_first / 2**20, 1),
           "first_call_peak_growth_mb": round((peak_first - base) / 2**20, 1),
           "cached_grid_rss_before_mb": round(base2 / 2**20, 1),
           "cached_grid_peak_rss_mb": None if peak_second is None else round(peak_second / 2**20, 1),
           "cached_grid_peak_growth_mb": None if peak_second is None else round((peak_second - base2) / 2**20, 1),
           "log_prob_mean": float(lp.mean()), "repeat_max_abs_diff": float((lp - lp2).abs().max())}
    if device == "cuda":
        out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def unchunked_bytes(rec: int, lmax: int, batch: int, itemsize: int = 4) -> dict:
    n = 72 * 8**rec
    width = (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3
    d = n * width * itemsize
    temps = n * 16 * (2 * lmax + 1) ** 2 * itemsize
    logits = batch * n * itemsize
    return {"grid_rotations": n, "width": width, "wigner_D_mb": round(d / 2**20, 1),
            "recursion_temporaries_mb": round(temps / 2**20, 1), "logits_mb": round(logits / 2**20, 1),
            "total_mb": round((d + temps + logits) / 2**20, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, nargs="+", default=[2048, 8192, 32768])
    p.add_argument("--rec", type=int, default=5)
    p.add_argument("--lmax", type=int, default=6)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(child(a.child, a.rec, a.lmax, a.batch, a.device)))
        return
    runs = []
    for chunk in a.chunks:
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONPATH=str(ROOT))
        res = subprocess.run([sys.executable, __file__, "--child", str(chunk), "--rec", str(a.rec), "--lmax", str(a.lmax),
                              "--batch", str(a.batch), "--device", a.device, "--threads", str(a.threads)],
                             capture_output=True, text=True, env=env, check=True)
        run = json.loads(res.stdout.strip().splitlines()[-1])
        print(run, flush=True)
        runs.append(run)
    import torch

    result = {
        "what": "one SO3Distribution.log_prob (batch 16, float32, no_grad) on the HEALPix SO(3) grid",
        "rec": a.rec, "lmax": a.lmax, "batch": a.batch, "dtype": "float32", "device": a.device, "threads": a.threads,
        "memory_measure": ("first call (grid built inside): resource.getrusage(RUSAGE_SELF).ru_maxrss (whole-process "
                           "peak RSS, including torch itself) and its growth over the /proc/self/statm RSS just before "
                           "the call; second call (grid cached): after malloc_trim(0), VmHWM of /proc/self/status after "
                           "resetting it with '5' > /proc/self/clear_refs, minus the RSS before; one fresh subprocess per chunk size"
                           + ("; cuda_peak_allocated_mb from torch.cuda.max_memory_allocated" if a.device == "cuda" else "")),
        "unchunked_computed_not_allocated": unchunked_bytes(a.rec, a.lmax, a.batch),
        "runs": runs,
        "peak_under_2gb": all(r["first_call_peak_rss_mb"] < 2048 for r in runs),
        "note": NOTE,
        "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
