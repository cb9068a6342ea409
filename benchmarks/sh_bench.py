"""Spherical harmonics: speed and accuracy of geodl versus sphericart-torch and e3nn, in one run.

For each lmax (default 10, 20, 40) and each tool:

- forward and forward+backward throughput (points·(lmax+1)²/s, median of ``--repeats``, the
  tools timed in interleaved order so machine load hits them alike);
- max abs error against ``scipy.special.sph_harm_y`` (float64 reference on the same
  float32-rounded points, including the poles and the dateline), in float32 and float64, and the
  first degree whose error exceeds 1e-4·√((2l+1)/(4π)) (1e-4 of that degree's largest value);
- memory: bytes kept for backward (saved tensors) and, on the CPU, the peak resident memory of
  forward+backward in a fresh process above its baseline, both relative to the output size; on
  CUDA ``torch.cuda.max_memory_allocated`` during the backward.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/sh_bench.py            # writes benchmarks/results/sh_cpu.json
    python benchmarks/sh_bench.py --device cuda                  # 1M points at lmax 10 -> sh_cuda.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _timing import wall_times  # noqa: E402

E3NN_MAX_L = 12


def _tools(device):
    from e3nn import o3
    import sphericart.torch as sct

    from geodl.ops import spherical_harmonics

    cache = {}

    def geodl_fn(lmax, x):
        return spherical_harmonics(lmax, x)

    def geodl_small_pages_fn(lmax, x):
        # the same function with its output on 4 KiB pages (GEODL_DISABLE_HUGEPAGES=1): shows how
        # much of the forward's lead comes from the page faults of a fresh output tensor
        old = os.environ.get("GEODL_DISABLE_HUGEPAGES")
        os.environ["GEODL_DISABLE_HUGEPAGES"] = "1"
        try:
            return spherical_harmonics(lmax, x)
        finally:
            if old is None:
                del os.environ["GEODL_DISABLE_HUGEPAGES"]
            else:
                os.environ["GEODL_DISABLE_HUGEPAGES"] = old

    def sphericart_fn(lmax, x):
        if lmax not in cache:
            cache[lmax] = sct.SphericalHarmonics(lmax)
        return cache[lmax](x)

    def e3nn_fn(lmax, x):
        if lmax > E3NN_MAX_L:
            raise NotImplementedError(f"e3nn stops at l = {E3NN_MAX_L}")
        # e3nn's polar axis is y: evaluating it at (y, z, x) gives the real basis at (x, y, z)
        return o3.spherical_harmonics(list(range(lmax + 1)), x[:, [1, 2, 0]], normalize=True)

    tools = {"geodl": geodl_fn, "sphericart-torch": sphericart_fn, "e3nn": e3nn_fn}
    if device.type == "cpu":
        tools["geodl-4k-pages"] = geodl_small_pages_fn
    return tools


def _points(n, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    return x.to(device=device, dtype=dtype)


def _scipy_real(x64: np.ndarray, lmax: int) -> np.ndarray:
    from scipy.special import sph_harm_y

    theta = np.arctan2(np.hypot(x64[:, 0], x64[:, 1]), x64[:, 2])
    phi = np.mod(np.arctan2(x64[:, 1], x64[:, 0]), 2 * np.pi)
    l = np.concatenate([np.full(2 * k + 1, k) for k in range(lmax + 1)])
    m = np.concatenate([np.arange(-k, k + 1) for k in range(lmax + 1)])
    y = sph_harm_y(l[None], np.abs(m)[None], theta[:, None], phi[:, None])
    s = math.sqrt(2) * (-1.0) ** np.abs(m)
    return np.where(m > 0, s * y.real, np.where(m < 0, s * y.imag, y.real))


def accuracy(tools, lmax: int, device) -> dict:
    """Max abs error vs scipy per tool and dtype, and the first degree that breaks the bound."""
    x32 = _points(300, torch.float32, "cpu", seed=1)
    poles = torch.tensor([[0, 0, 1], [0, 0, -1], [-1, 0, 0], [-1, 1e-7, 0.2], [1e-7, 0, 1]], dtype=torch.float32)
    x32 = torch.cat([poles / poles.norm(dim=1, keepdim=True), x32])
    ref = _scipy_real(x32.double().numpy(), lmax)
    l = np.concatenate([np.full(2 * k + 1, k) for k in range(lmax + 1)])
    bound = 1e-4 * np.sqrt((2 * l + 1) / (4 * np.pi))
    res = {}
    for name, fn in tools.items():
        for dtype in (torch.float32, torch.float64):
            key = f"{name}/{str(dtype).replace('torch.', '')}"
            try:
                y = fn(lmax, x32.to(device=device, dtype=dtype)).detach().double().cpu().numpy()
            except Exception as e:  # noqa: BLE001 - record what the peer does
                res[key] = {"error": f"{type(e).__name__}: {str(e)[:120]}"}
                continue
            err = np.abs(y - ref)
            err = np.where(np.isnan(err), np.inf, err)
            col = err.max(axis=0)
            bad = np.nonzero(col > bound)[0]
            res[key] = {"max_abs_error": float(col.max()),
                        "first_bad_degree": int(l[bad[0]]) if len(bad) else None,
                        "nonfinite": bool(~np.isfinite(y).all())}
    return res


def _saved_bytes(fn, lmax, x):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    xx = x.detach().clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(lmax, xx)
    return total[0], y.numel() * y.element_size()


_RSS_CHILD = r"""
import sys, torch
sys.path.insert(0, {here!r})
from sh_bench import _tools, _points
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
tool, lmax, n = {tool!r}, {lmax}, {n}
fn = _tools(torch.device("cpu"))[tool]
fn(lmax, _points(8, torch.float32, "cpu").requires_grad_(True)).sum().backward()  # warm-up / lazy imports
x = _points(n, torch.float32, "cpu").requires_grad_(True)
g = torch.ones(n, (lmax + 1) ** 2)
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak (VmHWM) to the current RSS
    fh.write("5")
base = status("VmRSS:")
y = fn(lmax, x)
y.backward(g)
print(status("VmHWM:") - base)
"""


def cpu_peak_rss(tool, lmax, n) -> int | None:
    """Peak RSS growth (bytes) of one forward+backward in a fresh process (Linux; else None)."""
    code = _RSS_CHILD.format(here=str(HERE), tool=tool, lmax=lmax, n=n)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        return None
    return int(r.stdout.strip().splitlines()[-1])


def cuda_backward_peak(fn, lmax, x) -> int:
    xx = x.detach().clone().requires_grad_(True)
    y = fn(lmax, xx)
    g = torch.ones_like(y)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    y.backward(g)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _measure(tools, lmax: int, n: int, device, repeats: int, no_rss: bool) -> list[dict]:
    """Rows (one per tool) of one lmax: timings, memory, accuracy. A tool that raises is recorded
    with its error; what it measured before (its forward times, say) is kept."""
    k = (lmax + 1) ** 2
    x = _points(n, torch.float32, device)
    acc = accuracy(tools, lmax, device)
    fwd = {t: [] for t in tools}
    fb = {t: [] for t in tools}
    failed = {}
    for _ in range(repeats):  # interleaved: each round times every tool once
        for name, fn in tools.items():
            if name in failed:
                continue
            try:
                with torch.no_grad():
                    fwd[name] += wall_times(lambda: fn(lmax, x), device, 1)
                xg = x.detach().clone().requires_grad_(True)
                g = None

                def fwd_bwd():
                    nonlocal g
                    y = fn(lmax, xg)
                    if g is None:
                        g = torch.ones_like(y)
                    y.backward(g)

                fb[name] += wall_times(fwd_bwd, device, 1)
            except Exception as e:  # noqa: BLE001 - record what the peer does
                failed[name] = f"{type(e).__name__}: {str(e)[:160]}"
    rows = []
    for name, fn in tools.items():
        row = {"lmax": lmax, "points": n, "tool": name, "device": str(device)}
        if fwd[name]:
            tf = statistics.median(fwd[name])
            row.update({"forward_ms": round(tf * 1e3, 4), "forward_throughput": n * k / tf})
        if fb[name]:
            tb = statistics.median(fb[name])
            row.update({"forward_backward_ms": round(tb * 1e3, 4), "forward_backward_throughput": n * k / tb})
        if name in failed or not fwd[name]:
            row["error"] = failed.get(name, "not run")
        else:
            saved, out_bytes = _saved_bytes(fn, lmax, x[: min(n, 20000)])
            row["saved_for_backward_over_output"] = round(saved / out_bytes, 3)
            if device.type == "cuda":
                row["backward_peak_over_output"] = round(cuda_backward_peak(fn, lmax, x) / (n * k * 4), 3)
            elif not no_rss:
                rss = cpu_peak_rss(name, lmax, n)
                # the peak includes y and its gradient buffer (2 outputs) as a floor for every tool
                row["fwd_bwd_peak_rss_over_output"] = None if rss is None else round(rss / (n * k * 4), 3)
        for dt in ("float32", "float64"):
            a = acc.get(f"{name}/{dt}", {})
            row[f"max_err_{dt}"] = a.get("max_abs_error", a.get("error"))
            row[f"first_bad_degree_{dt}"] = a.get("first_bad_degree")
        rows.append(row)
    return rows


def _isolated(tool: str, lmaxes, counts, args) -> list[dict]:
    """One tool in a child process (CUDA): an illegal memory access poisons the CUDA context for
    the rest of its process, so a peer's crash must not take the other tools' numbers with it.
    The child appends each lmax's row to a JSON-lines file as soon as it is measured."""
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as fh:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--device", args.device, "--tools", tool,
               "--lmax", ",".join(map(str, lmaxes)), "--points", ",".join(map(str, counts)),
               "--repeats", str(args.repeats), "--rows-jsonl", fh.name, "--no-rss"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.child_timeout)
            tail = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            code = r.returncode
        except subprocess.TimeoutExpired:
            tail, code = f"timed out after {args.child_timeout} s", -1
        rows = [json.loads(line) for line in fh.read().splitlines() if line.strip()]
    done = {row["lmax"] for row in rows}
    for lmax, n in zip(lmaxes, counts):
        if lmax not in done:  # the child died at this lmax (or before it)
            rows.append({"lmax": lmax, "points": n, "tool": tool, "device": args.device,
                         "error": f"process died (exit {code}): {tail[:200]}"})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--lmax", default="10,20,40")
    p.add_argument("--points", default=None,
                   help="comma list of point counts per lmax (default CPU 100000,25000,6000; CUDA 1000000 each)")
    p.add_argument("--repeats", type=int, default=None, help="timing rounds (default CPU 5, CUDA 20)")
    p.add_argument("--tools", default=None, help="comma list of tools (default all); with --device cuda and "
                   "no --tools, each tool runs in its own process")
    p.add_argument("--isolate", action="store_true", help="one process per tool (always on with CUDA)")
    p.add_argument("--child-timeout", type=int, default=240, help="seconds per tool process on CUDA")
    p.add_argument("--rows-jsonl", default=None, help=argparse.SUPPRESS)  # child -> parent rows
    p.add_argument("--out", default=None)
    p.add_argument("--no-rss", action="store_true", help="skip the CPU peak-memory subprocesses")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.repeats is None:
        args.repeats = 20 if device.type == "cuda" else 5
    lmaxes = [int(v) for v in args.lmax.split(",")]
    if args.points:
        counts = [int(v) for v in args.points.split(",")]
    else:
        counts = [1_000_000] * len(lmaxes) if device.type == "cuda" else [100_000, 25_000, 6_000][: len(lmaxes)]
    counts += [counts[-1]] * (len(lmaxes) - len(counts))
    tools = _tools(device)
    if args.tools:
        unknown = set(args.tools.split(",")) - set(tools)
        if unknown:
            p.error(f"--tools: unknown {sorted(unknown)}; expected some of {sorted(tools)}")
        tools = {k: v for k, v in tools.items() if k in args.tools.split(",")}
    rows = []
    if (device.type == "cuda" or args.isolate) and not args.tools:
        for name in tools:
            print(f"[{name}] own process", flush=True)
            rows += _isolated(name, lmaxes, counts, args)
    else:
        for lmax, n in zip(lmaxes, counts):
            new = _measure(tools, lmax, n, device, args.repeats, args.no_rss)
            rows += new
            if args.rows_jsonl:
                with open(args.rows_jsonl, "a") as fh:
                    fh.writelines(json.dumps(r, default=str) + "\n" for r in new)
        if args.rows_jsonl:
            return 0
    rows.sort(key=lambda r: (lmaxes.index(r["lmax"]), list(tools).index(r["tool"])))
    for lmax in lmaxes:
        ref = next((r for r in rows if r["lmax"] == lmax and r["tool"] == "geodl"), {})
        for r in rows:
            if r["lmax"] != lmax:
                continue
            if "forward_ms" in r and "forward_ms" in ref:
                r["forward_speed_vs_geodl"] = round(ref["forward_ms"] / r["forward_ms"], 3)
            if "forward_backward_ms" in r and "forward_backward_ms" in ref:
                r["fwd_bwd_speed_vs_geodl"] = round(ref["forward_backward_ms"] / r["forward_backward_ms"], 3)
    cols = ["lmax", "points", "tool", "forward_ms", "forward_backward_ms", "max_err_float32", "first_bad_degree_float32",
            "max_err_float64", "saved_for_backward_over_output", "fwd_bwd_peak_rss_over_output",
            "backward_peak_over_output", "error"]
    for r in rows:
        print("  ".join(f"{c}={r[c]:.4g}" if isinstance(r.get(c), float) else f"{c}={r.get(c)}" for c in cols if c in r))
    out = Path(args.out) if args.out else HERE / "results" / f"sh_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        from geodl.bench import write_results

        keep = {}  # the busy-machine matrix of sh_cpu_busy.py lives in the same file
        if out.exists():
            try:
                keep = {k: v for k, v in json.loads(out.read_text()).items() if k == "busy_matrix"}
            except ValueError:
                keep = {}
        write_results(out, {**keep, "benchmark": "spherical harmonics", "threads": torch.get_num_threads(),
                            "device_name": (torch.cuda.get_device_name() if device.type == "cuda"
                                            else platform.processor() or platform.machine()),
                            "torch": torch.__version__,
                            "repeats": args.repeats, "dtype": "float32 (timing)",
                            "accuracy_bound": "1e-4*sqrt((2l+1)/(4pi)) per degree vs scipy sph_harm_y",
                            "notes": "geodl's CPU output is column-major and, on Linux, backed by 2 MiB pages "
                                     "(madvise MADV_HUGEPAGE); geodl-4k-pages is the same call with "
                                     "GEODL_DISABLE_HUGEPAGES=1, the other tools allocate 4 KiB pages "
                                     "(torch's THP_MEM_ALLOC_ENABLE=1 would give them 2 MiB pages too). Forward "
                                     "times depend on whether a tool's fresh output reuses freed heap memory or "
                                     "page-faults in new memory (glibc), which varies with the interleaving; "
                                     "geodl vs geodl-4k-pages and repeated runs show the spread"}, rows)
    except ImportError:  # runner not available: plain JSON
        out.write_text(json.dumps({"rows": rows}, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
