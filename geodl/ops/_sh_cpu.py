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

The same library holds the rest of the default CPU path, in the same pool, for the same reason
(each small torch op is a parallel region that waits for a descheduled thread):
:func:`unit_directions_cpu`, the public function's prologue (finite check, the exact power-of-two
scaling of each row and the division by its norm in one pass, with the torch composition's
values and first-order gradients bit for bit), and :func:`sh_backward_cpu`, the C twin of the
closed-form backward :func:`geodl.ops._sh._sh_real_backward_analytic` (the incoming gradient read
in place, row- or column-major).

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

__all__ = ["sh_real_cpu", "sh_backward_cpu", "unit_directions_cpu", "kernel_info", "cache_dir"]

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
    ci = ctypes.c_int
    lib.geodl_sh_dirs.argtypes = [ci, vp, i64, i64, vp, vp, vp, i64, vp, ci]
    lib.geodl_sh_dirs_backward.argtypes = [ci, vp, i64, i64, vp, vp, vp, i64, ci]
    lib.geodl_sh_backward.argtypes = [ci, vp, i64, i64, vp, i64, i64, vp, i64, ci, vp, vp, vp, vp, vp, ci]
    for fn in (lib.geodl_sh_dirs, lib.geodl_sh_dirs_backward, lib.geodl_sh_backward):
        fn.restype = ci
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


def _served(*ts: torch.Tensor) -> bool:
    """CPU float32/float64 tensors with real storage (not traced by torch.compile / aot_autograd,
    whose fake tensors have no data, nor wrapped by torch.func), and the kernel not disabled."""
    if disabled() or torch.compiler.is_compiling():
        return False
    from torch._subclasses.fake_tensor import is_fake

    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
    return all(t.device.type == "cpu" and t.dtype in _DTYPES and not is_fake(t) and not wrapped(t) for t in ts)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"{what} kernel returned {rc}")


def _directions_forward(flat: torch.Tensor, lib):
    """``(u, inv, zero, nzero, nbad)`` of the C pass (see :func:`unit_directions_cpu`)."""
    n = flat.shape[0]
    u = torch.empty(n, 3, dtype=flat.dtype)
    inv = torch.empty(n, 2, dtype=flat.dtype)  # (|s|, p) per row, for the backward
    zero = torch.empty(n, 1, dtype=torch.bool)
    counts = (ctypes.c_int64 * 2)(0, 0)
    if n:
        _check(lib.geodl_sh_dirs(int(flat.dtype == torch.float64), flat.data_ptr(), flat.stride(0), flat.stride(1),
                                 u.data_ptr(), inv.data_ptr(), zero.data_ptr(), n, counts,
                                 _threads(3 * n)), "geodl_sh_dirs")
    return u, inv, zero, int(counts[0]), int(counts[1])


class _Directions(torch.autograd.Function):
    """Unit directions by the C pass. First-order backward in C with the operations autograd runs on
    the torch composition ``(x·p) / |x·p|`` (bit for bit its gradient): ``g/|s| + u·Σ(-g·(u/|s|))``,
    times ``p``; 0 on zero rows (their direction is a constant placeholder). Double backward
    differentiates the torch composition (:func:`geodl.ops._sh._directions`) instead."""

    @staticmethod
    def forward(ctx, flat, lib):
        u, inv, zero, nzero, nbad = _directions_forward(flat, lib)
        ctx.save_for_backward(flat, u, inv)
        ctx.lib = lib
        ctx.mark_non_differentiable(zero)
        ctx.nzero = nzero
        return u, zero, nzero, nbad

    @staticmethod
    def backward(ctx, gu, _gzero, _gnz, _gnb):
        flat, u, inv = ctx.saved_tensors
        if torch.is_grad_enabled():  # double backward: the differentiable torch composition
            from geodl.ops._sh import _directions

            with torch.enable_grad():
                ut, _ = _directions(flat, ctx.nzero > 0, False)
                return torch.autograd.grad(ut, flat, gu, create_graph=True)[0], None
        n = flat.shape[0]
        out = torch.empty(n, 3, dtype=flat.dtype)
        gu = gu.to(flat.dtype)
        if n:
            _check(ctx.lib.geodl_sh_dirs_backward(int(flat.dtype == torch.float64), gu.data_ptr(), gu.stride(0),
                                                  gu.stride(1), u.data_ptr(), inv.data_ptr(), out.data_ptr(), n,
                                                  _threads(3 * n)), "geodl_sh_dirs_backward")
        return out, None


def unit_directions_cpu(flat: torch.Tensor):
    """Unit directions of raw vectors ``(N, 3)`` in one C pass, or None where the kernel does not serve.

    The same semantics as :func:`geodl.ops._sh._scaled` followed by ``s / |s|``: each row is scaled
    by the exact power of two of its largest |entry| before squaring, then divided by its norm. A
    zero row gets the placeholder direction (1, 0, 0) (as :func:`geodl.ops._sh._safe_directions`)
    and is flagged; a row holding NaN or inf is counted (its direction is NaN). Bit for bit the
    values and first-order gradients of the torch composition where the CPU has FMA (as torch's
    ``vector_norm`` uses it); double backward through the torch composition.

    Parameters
    ----------
    flat : Tensor, shape (N, 3)
        CPU float32 or float64, any strides.

    Returns
    -------
    tuple or None
        ``(u, zero, nzero, nbad)``: directions ``(N, 3)`` (contiguous), the ``(N, 1)`` bool mask of
        the zero rows, the number of zero rows and of non-finite rows; None for other devices or
        dtypes, without the kernel, or under ``GEODL_DISABLE_CPU_KERNEL=1``.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops._sh_cpu import unit_directions_cpu
    >>> r = unit_directions_cpu(torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]]))
    >>> r is None or (r[0][0].tolist() == [0.6000000238418579, 0.0, 0.800000011920929] and r[2:] == (1, 0))
    True
    """
    if not _served(flat) or flat.dim() != 2 or flat.shape[1] != 3:
        return None
    lib = _library()
    if lib is None:
        return None
    if torch.is_grad_enabled() and flat.requires_grad:
        return _Directions.apply(flat, lib)
    u, _, zero, nzero, nbad = _directions_forward(flat, lib)
    return u, zero, nzero, nbad


@lru_cache(maxsize=64)
def _backward_tables(lmax: int, dtype: torch.dtype):
    """``(a, b, consts, ec, msq)`` of the C backward, in ``dtype`` (contiguous), made as
    :func:`geodl.ops._sh._sh_real_backward_analytic` makes its own: a_lm, b_lm (l ≥ 2, m ≤ l-2) of
    the coefficient grid, Q_mm (float64 cumulative product, cast), e_m·Q_mm and m·√2 in ``dtype``."""
    from geodl.ops._sh import _coefficient_grid, _sectoral_coefficients

    grid = torch.tensor(_coefficient_grid(lmax), dtype=torch.float64)
    a = [grid[0, l, : l - 1] for l in range(2, lmax + 1)]
    b = [grid[1, l, : l - 1] for l in range(2, lmax + 1)]
    a = torch.cat(a) if a else torch.zeros(1, dtype=torch.float64)
    b = torch.cat(b) if b else torch.zeros(1, dtype=torch.float64)
    d, e = _sectoral_coefficients(lmax)
    consts = torch.tensor(d, dtype=torch.float64).cumprod(0).to(dtype)
    ec = torch.tensor(e[:lmax], dtype=torch.float64).to(dtype) * consts[:lmax]
    msq = torch.arange(0, lmax + 1, dtype=dtype) * math.sqrt(2.0)
    return tuple(t.to(dtype).contiguous() for t in (a, b, consts, ec, msq))


def sh_backward_cpu(xyz: torch.Tensor, grad: torch.Tensor, lmax: int) -> torch.Tensor | None:
    """First-order gradient ``(N, 3)`` of ``(grad * sh_real(xyz)).sum()`` by the C kernel, or None.

    The C twin of :func:`geodl.ops._sh._sh_real_backward_analytic` (the same closed form), one
    parallel pass over blocks of points in the forward's thread pool.

    Parameters
    ----------
    xyz : Tensor, shape (N, 3)
        Unit vectors, CPU float32 or float64, any strides.
    grad : Tensor, shape (N, (lmax+1)²)
        The incoming gradient, any strides (row- or column-major read in place); cast to
        ``xyz``'s dtype when it differs.
    lmax : int

    Returns
    -------
    Tensor or None
        ``(N, 3)`` contiguous; None where the kernel does not serve the call.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops._sh_cpu import sh_backward_cpu
    >>> x = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> g = sh_backward_cpu(x, torch.ones(1, 4, dtype=torch.float64), 1)
    >>> g is None or [round(v, 6) for v in g[0].tolist()] == [0.488603, 0.488603, 0.488603]
    True
    """
    if not _served(xyz, grad) or xyz.dim() != 2 or xyz.shape[1] != 3:
        return None
    lib = _library()
    if lib is None:
        return None
    n = xyz.shape[0]
    if grad.dtype != xyz.dtype:
        grad = grad.to(xyz.dtype)
    if lmax == 0 or n == 0:
        return torch.zeros(n, 3, dtype=xyz.dtype)
    if grad.stride(0) != 1 and grad.stride(1) != 1:
        grad = grad.contiguous()
    out = torch.empty(n, 3, dtype=xyz.dtype)
    a, b, consts, ec, msq = _backward_tables(lmax, xyz.dtype)
    _check(lib.geodl_sh_backward(int(xyz.dtype == torch.float64), xyz.data_ptr(), xyz.stride(0), xyz.stride(1),
                                 grad.data_ptr(), grad.stride(0), grad.stride(1), out.data_ptr(), n, lmax,
                                 a.data_ptr(), b.data_ptr(), consts.data_ptr(), ec.data_ptr(), msq.data_ptr(),
                                 _threads(n * (lmax + 1) ** 2)), f"geodl_sh_backward (lmax={lmax}, n={n})")
    return out
