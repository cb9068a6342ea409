"""The CPU forward of the real spherical harmonics as one C kernel (``_sh_cpu.c``), built at first use.

The torch forward (:func:`geodl.ops._sh._sh_real_forward`) is about a thousand small row
operations per call, each its own OpenMP parallel region: with two threads and one other busy
process every region's barrier waits for a descheduled thread. The C kernel runs the same
recursion, with the same operations in the same order (bit-identical where the CPU has FMA, as
torch's ``addcmul`` uses it), as one pass over blocks of 256 points: each block computes all
degrees in a scratch buffer that stays in cache and streams its finished rows to the output.

Threads: ``torch.get_num_threads()`` (fewer for small inputs), the caller plus a small pool of
POSIX threads; pieces of work are claimed through one atomic counter, so a thread that is
descheduled delays only the piece it holds and the call never waits for a thread that has not
started. Outputs from 8 MiB are written with streaming stores after their pages are mapped in
2 MiB pieces (``MADV_POPULATE_WRITE``), shared out among the threads.

Build: the system C compiler (``$CC``, else ``cc`` / ``gcc``) compiles the source once, in under
a second, into ``<cache>/sh_cpu-<hash>.so``, the hash taken over the source, the compiler, its
flags and the CPU's feature flags (the build uses ``-march=native``); ``<cache>`` is
``$GEODL_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/geodl/kernels``, else ``~/.cache/geodl/kernels``
(where that cannot be written: a ``geodl-kernels-<uid>`` folder in the temporary directory). The
library is written to a temporary name and renamed into place (:func:`geodl._io.atomic_write`),
so processes that build at the same time never load a half-written file. It is loaded with
:mod:`ctypes`, which releases the GIL during the call.

Fallback: without a working compiler, for other devices or dtypes than CPU float32/float64, or
with ``GEODL_DISABLE_CPU_KERNEL=1`` (read on every call), :func:`sh_real_cpu` returns None and
the caller runs the torch forward.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["sh_real_cpu", "kernel_info", "cache_dir"]

_SOURCE = Path(__file__).with_name("_sh_cpu.c")
_CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-pthread")
_DTYPES = {torch.float32: "geodl_sh_real_f32", torch.float64: "geodl_sh_real_f64"}
_MIN_OUTPUTS_PER_THREAD = 1 << 16  # below ~64k outputs per thread, waking threads costs more than it saves
_BUILD_TIMEOUT_S = 120
_Y00 = 1.0 / math.sqrt(4.0 * math.pi)

_lock = threading.Lock()
_state: dict = {}  # "lib": loaded kernel (or None after a failure), "info": how it was built / why not


def disabled() -> bool:
    """``GEODL_DISABLE_CPU_KERNEL`` is set to something other than ``""`` / ``"0"`` (read per call)."""
    return os.environ.get("GEODL_DISABLE_CPU_KERNEL", "") not in ("", "0")


def cache_dir() -> Path:
    """Folder of the built kernels: ``$GEODL_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/geodl/kernels``,
    else ``~/.cache/geodl/kernels``.

    Returns
    -------
    pathlib.Path
        The folder (not created here).

    Examples
    --------
    >>> import os
    >>> from geodl.ops._sh_cpu import cache_dir
    >>> "GEODL_KERNEL_CACHE" in os.environ or cache_dir().parts[-2:] == ("geodl", "kernels")
    True
    """
    env = os.environ.get("GEODL_KERNEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "geodl" / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@lru_cache(maxsize=4)
def _compiler_version(cc: str) -> str:
    try:
        r = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return r.stdout.splitlines()[0] if r.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@lru_cache(maxsize=1)
def _cpu_flags() -> str:
    """The CPU's feature flags (``-march=native`` builds differ between CPUs): /proc/cpuinfo on
    Linux, else the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _key(cc: str, flags: tuple) -> str:
    h = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), cc.encode(), _compiler_version(cc).encode(), " ".join(flags).encode(),
                 platform.machine().encode(), sys.platform.encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:20]


def _build(cc: str, flags: tuple, folder: Path) -> Path:
    """The cached library for ``flags``, compiled (atomically) when absent; raises on failure."""
    from geodl._io import atomic_write

    path = folder / f"sh_cpu-{_key(cc, flags)}.so"
    if path.exists():
        return path

    def compile_to(tmp: Path) -> None:
        r = subprocess.run([cc, *flags, str(_SOURCE), "-o", str(tmp)], capture_output=True, text=True,
                           timeout=_BUILD_TIMEOUT_S)
        if r.returncode != 0:
            raise RuntimeError(f"{Path(cc).name} failed: {r.stderr.strip()[-400:]}")

    return atomic_write(path, compile_to)


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    for name in _DTYPES.values():
        fn = getattr(lib, name)
        fn.argtypes = [vp, i64, i64, vp, i64, ctypes.c_int, vp, vp, vp, ctypes.c_double, ctypes.c_int, ctypes.c_int]
        fn.restype = ctypes.c_int
    return lib


def _library():
    """The loaded kernel, building it on first use; None where it cannot be built or loaded."""
    if "lib" in _state:
        return _state["lib"]
    with _lock:
        if "lib" in _state:
            return _state["lib"]
        lib, info = None, {}
        cc = _compiler()
        if cc is None:
            info["error"] = "no C compiler found ($CC, cc, gcc)"
        else:
            errors = []
            folders = [cache_dir(), Path(tempfile.gettempdir()) / f"geodl-kernels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"]
            flags = _CFLAGS
            for folder in folders:
                try:
                    path = _build(cc, flags, folder)
                    try:
                        lib = _load(path)
                    except OSError:  # a damaged file: build it again once
                        path.unlink(missing_ok=True)
                        lib = _load(_build(cc, flags, folder))
                    info.update(path=str(path), compiler=cc, flags=" ".join(flags))
                    break
                except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as e:
                    errors.append(f"{folder}: {e}")
            if lib is None:
                info["error"] = "; ".join(errors)[-1000:]
        _state["lib"], _state["info"] = lib, info
        return lib


def kernel_info() -> dict:
    """How the CPU kernel was built (``path``, ``compiler``, ``flags``) or why it was
    not (``error``); ``{"disabled": True}`` under ``GEODL_DISABLE_CPU_KERNEL=1``. Builds it if needed.

    Returns
    -------
    dict

    Examples
    --------
    >>> from geodl.ops._sh_cpu import kernel_info
    >>> info = kernel_info()
    >>> ("path" in info) or ("error" in info) or info.get("disabled")
    True
    """
    if disabled():
        return {"disabled": True}
    _library()
    return dict(_state["info"])


@lru_cache(maxsize=64)
def _tables(lmax: int, dtype: torch.dtype):
    """Flat ``(ratio, a, ab)`` of :func:`geodl.ops._sh._forward_tables` in ``dtype`` (contiguous)."""
    from geodl.ops._sh import _forward_tables

    a, ab, ratio = _forward_tables(lmax, torch.float64, "cpu")
    flat_a = torch.cat([t.reshape(-1) for t in a[1:]]) if lmax >= 1 else torch.zeros(1, dtype=torch.float64)
    flat_ab = torch.cat([t.reshape(-1) for t in ab[2:]]) if lmax >= 2 else torch.zeros(1, dtype=torch.float64)
    ratio_t = torch.tensor(ratio[:lmax] if lmax >= 1 else [0.0], dtype=torch.float64)
    return tuple(t.to(dtype).contiguous() for t in (ratio_t, flat_a, flat_ab))


_STREAM_BYTES = 8 << 20  # outputs from 8 MiB: streaming stores and the populate pass (flags 1 | 2)


def _flags(out: torch.Tensor) -> int:
    """Kernel flags for this output: 1 = streaming stores (the output's lines are not read first, nor
    kept in cache), 2 = map its pages first (``MADV_POPULATE_WRITE``, in 2 MiB pieces shared out
    among the threads). Both pay off for outputs far larger than the caches (measured: 1.3-1.7x at
    100k points, lmax 10-20, with 4 KiB or 2 MiB pages); a small output is left in cache for its
    reader instead."""
    return 3 if out.numel() * out.element_size() >= _STREAM_BYTES else 0


def _threads(outputs: int) -> int:
    """Threads for a call writing ``outputs`` values: ``torch.get_num_threads()``, fewer for small
    calls (at least ~64k outputs per thread)."""
    return max(1, min(torch.get_num_threads(), outputs // _MIN_OUTPUTS_PER_THREAD))


def sh_real_cpu(xyz: torch.Tensor, lmax: int, empty) -> torch.Tensor | None:
    """Real harmonics ``(N, (lmax+1)²)`` of unit vectors ``xyz`` ``(N, 3)`` by the C kernel, or None.

    Parameters
    ----------
    xyz : Tensor, shape (N, 3)
        CPU float32 or float64, any strides.
    lmax : int
        Largest degree (≥ 0).
    empty : callable
        ``empty(rows, n, dtype, device)``: the output buffer ``((lmax+1)², N)`` (row-major).

    Returns
    -------
    Tensor or None
        The transposed view of the ``((lmax+1)², N)`` buffer (column-major, like the torch forward),
        or None where the kernel does not serve the call (not CPU, another dtype, disabled, not
        built): the caller then runs the torch forward.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops._sh import _empty_output
    >>> from geodl.ops._sh_cpu import sh_real_cpu
    >>> y = sh_real_cpu(torch.tensor([[0.0, 0.0, 1.0]]), 2, _empty_output)
    >>> y is None or (y.shape == (1, 9) and round(float(y[0, 2]), 6) == 0.488603)
    True
    """
    if xyz.device.type != "cpu" or xyz.dtype not in _DTYPES or xyz.dim() != 2 or xyz.shape[1] != 3 or disabled():
        return None
    lib = _library()
    if lib is None:
        return None
    n, k = xyz.shape[0], (lmax + 1) ** 2
    threads = _threads(n * k)
    out = empty(k, n, xyz.dtype, xyz.device)
    if n == 0:
        return out.t()
    ratio, a, ab = _tables(lmax, xyz.dtype)
    rc = getattr(lib, _DTYPES[xyz.dtype])(xyz.data_ptr(), xyz.stride(0), xyz.stride(1), out.data_ptr(), n, lmax,
                                          ratio.data_ptr(), a.data_ptr(), ab.data_ptr(), _Y00,
                                          threads, _flags(out))
    if rc != 0:
        raise RuntimeError(f"geodl_sh_real kernel returned {rc} (lmax={lmax}, n={n})")
    return out.t()
