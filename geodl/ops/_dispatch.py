"""The one back-end switch of :mod:`geodl.ops`: the Triton probe, the choice per call, op registration.

Every op of :mod:`geodl.ops` is registered here by :func:`register_kernel` (a
``torch.library.custom_op`` in the ``geodl::`` namespace with its fake, its plain-torch
reference, the optional Triton kernel and the optional autograd) and every public function
by :func:`public_op`. Which implementation runs is decided per call by :func:`choose`:

* ``GEODL_DISABLE_TRITON=1`` (read on every call) forces the torch reference;
* else the back end set by :func:`set_backend` / :func:`use_backend`: ``"torch"``; ``"auto"``
  (default): Triton for CUDA tensors when Triton imports, torch otherwise; ``"triton"``: the
  Triton kernel on CUDA tensors, and on CPU tensors when ``TRITON_INTERPRET=1`` (Triton's
  interpreter, how the tests run the kernels without a GPU; it must be set before the kernels
  are imported), an error otherwise.

A kernel that does not serve the call's arguments (e.g. a dtype the kernel lacks) runs the torch
reference on every back end. :func:`record_backends` shows which back end each op actually ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import os
import types
from typing import Callable, Iterator

import torch

from geodl._checks import check_choice

__all__ = ["BACKENDS", "available_backends", "get_backend", "record_backends", "set_backend", "use_backend"]

BACKENDS = ("auto", "torch", "triton")

_state = {"backend": "auto"}


# --------------------------------------------------------------------------- the Triton probe
@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    """Whether ``import triton`` works here (probed once per process)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        importlib.import_module("triton")
    except Exception:  # installed but broken (e.g. no compatible driver libraries)
        return False
    return True


def triton_disabled() -> bool:
    """``GEODL_DISABLE_TRITON`` set to anything but ``""`` / ``"0"`` (read on every call)."""
    return os.environ.get("GEODL_DISABLE_TRITON", "") not in ("", "0")


def interpreting() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors through Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


# --------------------------------------------------------------------------- the switch
def set_backend(backend: str) -> None:
    """Choose the back end of every :mod:`geodl.ops` op for this process.

    Parameters
    ----------
    backend : {"auto", "torch", "triton"}
        ``"auto"`` (default): the Triton kernel for CUDA tensors when Triton imports, the torch
        reference otherwise. ``"torch"``: always the torch reference. ``"triton"``: the Triton
        kernel wherever an op has one for the call's arguments; CPU tensors need
        ``TRITON_INTERPRET=1`` (else the call raises ``RuntimeError``). ``GEODL_DISABLE_TRITON=1``
        overrides all three (torch).

    Examples
    --------
    >>> from geodl.ops import get_backend, set_backend
    >>> set_backend("torch"); get_backend()
    'torch'
    >>> set_backend("auto")
    """
    _state["backend"] = check_choice("backend", backend, BACKENDS)


def get_backend() -> str:
    """The back end set by :func:`set_backend` / :func:`use_backend` (``"auto"`` by default).

    Examples
    --------
    >>> from geodl.ops import get_backend
    >>> get_backend()
    'auto'
    """
    return _state["backend"]


@contextlib.contextmanager
def use_backend(backend: str) -> Iterator[str]:
    """Context manager: :func:`set_backend` inside the block, the previous back end after it.

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import record_backends, scatter, use_backend
    >>> with use_backend("torch"), record_backends() as ran:
    ...     _ = scatter(torch.ones(3), torch.tensor([0, 1, 1]), dim_size=2)
    >>> ran["scatter"]
    'torch'
    """
    previous = get_backend()
    set_backend(backend)
    try:
        yield backend
    finally:
        _state["backend"] = previous


def choose(kernel: str, t: torch.Tensor, supported: bool = True) -> str:
    """``"triton"`` or ``"torch"`` for one call of ``kernel`` on tensor ``t`` (and record it).

    ``supported``: whether the kernel serves this call's arguments (dtype, sizes); when not, the
    torch reference runs on every back end.
    """
    backend = "torch"
    want = _state["backend"]
    if want != "torch" and not triton_disabled():
        if want == "triton":
            if not triton_importable():
                raise RuntimeError(f"backend 'triton' was requested for geodl::{kernel}, but triton does "
                                   "not import here (pip install triton; or geodl.ops.set_backend('auto'))")
            if not (t.is_cuda or (t.device.type == "cpu" and interpreting())):
                raise RuntimeError(f"backend 'triton' was requested for geodl::{kernel}, but its input is "
                                   f"on {t.device}: the Triton kernels run on CUDA tensors, or on CPU "
                                   "tensors under TRITON_INTERPRET=1 (set before triton is imported)")
            backend = "triton" if supported else "torch"
        elif t.is_cuda and supported and triton_importable():
            backend = "triton"
    _note(kernel, backend)
    return backend


# --------------------------------------------------------------------------- the record
_RECORDS: list[dict] = []  # open record_backends() dicts
_OPS: list[set] = []  # back ends used by each public op call in progress (innermost last)


def _note(kernel: str, backend: str) -> None:
    for record in _RECORDS:
        record[f"geodl::{kernel}"] = backend
    for used in _OPS:
        used.add(backend)


@contextlib.contextmanager
def record_backends() -> Iterator[dict]:
    """Record which back end each op ran inside the block.

    Yields a dict, filled as ops run: public op name (``"scatter"``) -> ``"torch"``, ``"triton"``
    or ``"torch+triton"`` (its last call; an op whose call ran several kernels on different back
    ends), and each registered kernel ``"geodl::<name>"`` -> the back end of its last call.
    Records eager calls (inside ``torch.compile`` only the kernels are recorded).

    Examples
    --------
    >>> import torch
    >>> from geodl.ops import eigh3x3, record_backends
    >>> with record_backends() as ran:
    ...     _ = eigh3x3(torch.eye(3))
    >>> ran["eigh3x3"], ran["geodl::eigh3x3"]
    ('torch', 'torch')
    """
    record: dict = {}
    _RECORDS.append(record)
    try:
        yield record
    finally:
        _RECORDS.remove(record)


def _run_recorded(name: str, fn: Callable, args, kwargs):
    used: set = set()
    _OPS.append(used)
    try:
        return fn(*args, **kwargs)
    finally:
        _OPS.pop()
        label = "+".join(sorted(used)) or "torch"  # no kernel ran (e.g. reduce="mul"): plain torch
        for record in _RECORDS:
            record[name] = label


def _wrapper_factory(fn, name, records, run, compiling):
    def wrapper(*args, **kwargs):
        if not records or compiling():  # not recording (one list check), or traced by torch.compile
            return fn(*args, **kwargs)
        return run(name, fn, args, kwargs)

    return wrapper


@dataclasses.dataclass(frozen=True)
class PublicOp:
    name: str
    module: str
    kernels: tuple  # names of the kernels with a Triton implementation it can run


_PUBLIC: dict[str, PublicOp] = {}


def public_op(name: str, kernels: tuple = ()):
    """Decorator for a public op of :mod:`geodl.ops`: registers it (for :func:`available_backends`)
    and makes :func:`record_backends` see it. ``kernels``: the registered kernels it runs that
    have a Triton implementation (empty: torch only).

    The wrapper is built with the op module's globals, so ``doctest`` and ``inspect`` treat it as
    a function of that module (its docstring examples run with the module's doctests).
    """

    def decorate(fn):
        factory = types.FunctionType(_wrapper_factory.__code__, fn.__globals__, "_wrapper_factory")
        wrapper = functools.wraps(fn)(factory(fn, name, _RECORDS, _run_recorded, torch.compiler.is_compiling))
        _PUBLIC[name] = PublicOp(name, fn.__module__, tuple(kernels))
        return wrapper

    return decorate


# --------------------------------------------------------------------------- registration
@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    op: object  # the torch.library CustomOpDef
    impl: Callable  # the dispatching implementation (callable without the custom-op dispatcher)
    has_triton: bool


_KERNELS: dict[str, Kernel] = {}


def lazy(module: str, attr: str) -> Callable:
    """``module.attr`` imported on first call (Triton kernel modules import triton)."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    call.__name__ = attr
    return call


def register_kernel(name: str, ref: Callable, *, fake: Callable, triton: Callable | None = None,
                    dtypes: tuple | None = None, supports: Callable | None = None,
                    backward: Callable | None = None, setup_context: Callable | None = None):
    """Register ``geodl::<name>`` and return its ``torch.library`` custom op.

    Parameters
    ----------
    name : str
        Op name in the ``geodl`` namespace.
    ref : callable
        The plain-torch reference (any device); its type annotations give the op's schema.
    fake : callable
        Shapes/dtypes of the outputs for tracing (``register_fake``).
    triton : callable, optional
        The Triton implementation, same arguments as ``ref`` (import triton lazily inside, e.g.
        with :func:`lazy`).
    dtypes : tuple of torch.dtype, optional
        dtypes of the first argument the Triton kernel serves (default: any).
    supports : callable, optional
        ``supports(*args) -> bool``: whether the Triton kernel serves these arguments.
    backward, setup_context : callable, optional
        Autograd (``register_autograd``).

    Every call goes through :func:`choose` with the first tensor argument.
    """
    def impl(*args):
        if triton is None:
            _note(name, "torch")
            return ref(*args)
        ok = (dtypes is None or args[0].dtype in dtypes) and (supports is None or supports(*args))
        if choose(name, args[0], ok) == "triton":
            return triton(*args)
        return ref(*args)

    schema = torch.library.infer_schema(ref, mutates_args=())
    op = torch.library.custom_op(f"geodl::{name}", impl, mutates_args=(), schema=schema)
    op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    _KERNELS[name] = Kernel(name, op, impl, triton is not None)
    return op


def implementation(name: str) -> Callable:
    """The dispatching implementation of kernel ``name`` (eager calls that skip the custom op)."""
    return _KERNELS[name].impl


# --------------------------------------------------------------------------- discovery
_OP_MODULES = ("_scatter", "_eigh", "_neighbors", "_sh")


def _triton_label() -> str | None:
    if not triton_importable():
        return None
    return "triton (cuda)" if torch.cuda.is_available() else "triton (cuda only; no CUDA device here)"


def available_backends() -> dict[str, list[str]]:
    """Map each public op of :mod:`geodl.ops` to the back ends usable here (``geodl info`` prints it).

    Returns
    -------
    dict[str, list[str]]
        ``{op_name: ["torch", ...]}``; ``"torch"`` is always first; Triton is listed for ops with
        a Triton kernel when Triton imports (marked when there is no CUDA device).

    Examples
    --------
    >>> from geodl.ops import available_backends
    >>> available_backends()["scatter"][0]
    'torch'
    """
    for mod in _OP_MODULES:
        importlib.import_module(f"geodl.ops.{mod}")
    triton = _triton_label()
    table: dict[str, list[str]] = {}
    for name in sorted(_PUBLIC):
        table[name] = ["torch"]
        if triton is not None and _PUBLIC[name].kernels:
            table[name].append(triton)
    return table


def public_ops() -> list[str]:
    """Names of every registered public op (after importing every op module)."""
    for mod in _OP_MODULES:
        importlib.import_module(f"geodl.ops.{mod}")
    return sorted(_PUBLIC)
