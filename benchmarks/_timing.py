"""Timing helper shared by the benchmark scripts of this folder.

Every measurement follows the same protocol: warm-up calls first (lazy imports, caches, Triton and
torch.compile compilation), then timed calls, each bracketed by a CUDA synchronise on CUDA so the
time covers the queued kernels and not only their launch; callers report the median. Several
closures are timed round-robin (A, B, C, A, B, C, ...) so that drifting load on a shared machine
hits every implementation alike. Wall time (``time.perf_counter``) and process CPU time
(``time.process_time``, steadier on a loaded CPU; on CUDA it only measures the launch overhead)
are both recorded.

    from _timing import median_time, sample
    t = median_time(lambda: f(x), "cpu", repeats=5)              # seconds
    s = sample({"ours": f, "peer": g}, "cpu", repeats=5)         # s["ours"]["wall"], s["ours"]["cpu"]
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

__all__ = ["median_time", "sample", "sync", "timed", "wall_times"]


def sync(device) -> None:
    """``torch.cuda.synchronize()`` when ``device`` (str or torch.device) is a CUDA device."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device) -> tuple[float, float]:
    """One call of ``fn``: (wall seconds, process CPU seconds), synchronised on CUDA."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def sample(fns: dict, device, repeats: int, warmup: int = 1) -> dict:
    """``warmup`` untimed calls of each closure, then ``repeats`` rounds timing each once in turn.

    Returns ``{name: {"wall": [seconds, ...], "cpu": [seconds, ...]}}``, one entry per round.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out = {k: {"wall": [], "cpu": []} for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            wall, cpu = timed(fn, device)
            out[k]["wall"].append(wall)
            out[k]["cpu"].append(cpu)
    return out


def wall_times(fn: Callable[[], object], device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return sample({"fn": fn}, device, repeats, warmup)["fn"]["wall"]


def median_time(fn: Callable[[], object], device, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    return statistics.median(wall_times(fn, device, repeats, warmup))
