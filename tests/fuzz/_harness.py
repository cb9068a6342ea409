"""Shared harness of the whole-API fuzz suite.

Each public entry point registers, with :func:`fuzz`, a *builder* (run in a worker process: it turns
generated arguments into a ``call`` and a ``verify`` closure) and a hypothesis strategy of
:class:`Case` (the arguments plus what the case expects: a valid input, an invalid argument, a
non-finite input, or an input that may be either accepted or cleanly refused).

Cases are generated in the parent (hypothesis, derandomized: the same cases on every run), then run
by a small pool of worker processes whose address space is limited (``RLIMIT_AS``, as in
``tests/ops/test_scatter_hardening.py``) and whose calls have a wall-clock timeout, so a crash, a
hang or a runaway allocation costs one worker (restarted) and is counted, not the test session.

Outcomes (:data:`OUTCOMES`):

``ok``     the call returned and its result passed the oracle (or the input was non-finite and the
           call returned)
``clean``  ``ValueError``/``TypeError`` naming the argument that was made invalid
``other``  any other exception, an error that names no invalid argument, or a valid input refused
``wrong``  the oracle disagrees, the output is not finite for a finite input, or an invalid input
           was accepted silently
``hang``   a timeout, ``MemoryError``, an allocator failure, or a worker killed (signal, RLIMIT_AS)

Environment: ``GEODL_FUZZ_SCALE`` multiplies every entry's number of examples (the benchmark script
raises it), ``GEODL_FUZZ_WORKERS`` (default 2), ``GEODL_FUZZ_TIMEOUT`` (seconds a call may take,
default 20), ``GEODL_FUZZ_AS_GIB`` (address space of a worker, default 6), ``GEODL_FUZZ_OUT`` (a path:
the counts are written there as JSON at the end of the session).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

OUTCOMES = ("ok", "clean", "other", "wrong", "hang")
MODES = ("valid", "invalid", "nonfinite", "maybe")

SCALE = float(os.environ.get("GEODL_FUZZ_SCALE", "1"))
WORKERS = int(os.environ.get("GEODL_FUZZ_WORKERS", "2"))
TIMEOUT = float(os.environ.get("GEODL_FUZZ_TIMEOUT", "20"))
AS_LIMIT = int(float(os.environ.get("GEODL_FUZZ_AS_GIB", "6")) * (1 << 30))
HUGE = 10**12  # a size no machine can hold: must be refused before allocating


class Wrong(AssertionError):
    """Raised by a verify closure when the oracle disagrees."""


def expect(cond, msg: str = "oracle disagrees") -> None:
    if not cond:
        raise Wrong(msg)


def close(a, b, *, atol: float = 1e-6, rtol: float = 1e-5, msg: str = "") -> None:
    """``a`` and ``b`` (tensors) have the same shape and agree (NaN positions must match)."""
    import torch

    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    expect(tuple(a.shape) == tuple(b.shape), f"{msg} shape {tuple(a.shape)} != {tuple(b.shape)}")
    if a.numel():
        ok = torch.allclose(a.detach().double().cpu(), b.detach().double().cpu(), atol=atol, rtol=rtol, equal_nan=True)
        if not ok:
            err = (a.detach().double().cpu() - b.detach().double().cpu()).abs().nan_to_num(float("inf")).max().item()
            raise Wrong(f"{msg} max abs error {err:.3g} (atol {atol}, rtol {rtol})")


def finite(*xs, msg: str = "output") -> None:
    """Every tensor in ``xs`` is finite (for a finite input)."""
    import torch

    for x in xs:
        if isinstance(x, torch.Tensor) and (x.is_floating_point() or x.is_complex()) and x.numel():
            expect(bool(torch.isfinite(x).all()), f"{msg}: not finite for a finite input")


@dataclass(frozen=True)
class Case:
    """One generated call: keyword arguments for the builder and what the case expects."""

    kwargs: dict
    mode: str = "valid"
    bad: tuple = ()  # argument names the error must name (mode invalid / nonfinite / maybe)
    note: str = ""

    def __post_init__(self):
        assert self.mode in MODES, self.mode
        assert self.mode == "valid" or self.bad, "a case that may be refused names its argument"


@dataclass
class Entry:
    name: str  # public qualified name, e.g. "geodl.ops.scatter"
    builder: str  # "module:function" importable in a worker
    cases: Callable  # () -> hypothesis strategy of Case
    examples: int


REGISTRY: dict[str, Entry] = {}
RESULTS: dict[str, dict] = {}  # entry name -> counts and samples (filled by run_entry)


def fuzz(*names: str, examples: int = 40):
    """Register the decorated builder for the public entry points ``names`` (``examples``: how many
    cases hypothesis generates per run, times ``GEODL_FUZZ_SCALE``). Stack it on :func:`with_cases`,
    which attaches the strategy of :class:`Case`::

        @fuzz("geodl.ops.scatter", examples=60)
        @with_cases(lambda: cases(valid_strategy, {"index": [Mut(...), ...]}))
        def build_scatter(src, index, ...):   # runs in a worker
            def call(): ...                   # the call under test
            def verify(out): ...              # the oracle (raise Wrong, or use expect/close)
            return call, verify
    """

    def deco(fn):
        for name in names:
            REGISTRY[name] = Entry(name, f"{fn.__module__}:{fn.__qualname__}", lambda fn=fn: fn.cases(), examples)
        return fn

    return deco


def with_cases(strategy_fn):
    """Attach the strategy function to a builder (use under :func:`fuzz`)."""

    def deco(fn):
        fn.cases = strategy_fn
        return fn

    return deco


# --------------------------------------------------------------------------- generation
def generate(entry: Entry, n: int | None = None) -> list[Case]:
    """The cases of ``entry`` (derandomized hypothesis: the same list on every run)."""
    from hypothesis import HealthCheck, Phase, given, settings

    n = n if n is not None else max(1, int(round(entry.examples * SCALE)))
    out: list[Case] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(entry.cases())
    def collect(case):
        out.append(case)

    collect.hypothesis.inner_test.__name__ = "fuzz_" + entry.name.replace(".", "_")
    collect()
    seen, unique = set(), []
    for c in out:  # hypothesis may repeat an example of a small space
        key = repr(sorted((k, _key(v)) for k, v in c.kwargs.items())), c.mode, c.bad
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _key(v):
    try:
        import torch

        if isinstance(v, torch.Tensor):
            return ("T", v.dtype, tuple(v.shape), str(v.device), v.detach().cpu().flatten()[:64].tolist() if v.device.type != "meta" else None)
    except Exception:  # pragma: no cover
        pass
    if isinstance(v, (list, tuple)):
        return tuple(_key(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _key(x)) for k, x in v.items()))
    return repr(v)


# --------------------------------------------------------------------------- worker side
def _limit_memory():  # preexec_fn of a worker
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    os.setsid()


def _send(f, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    f.write(struct.pack("<Q", len(data)) + data)
    f.flush()


def _recv(f):
    head = f.read(8)
    if len(head) < 8:
        raise EOFError
    (n,) = struct.unpack("<Q", head)
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return pickle.loads(data)


_ALLOC_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory", "std::bad_alloc")


def _execute(builder: str, kwargs: dict) -> tuple[str, str]:
    """Run one case in this (worker) process: ``(raw outcome, detail)``."""
    mod, _, qual = builder.partition(":")
    try:
        fn = importlib.import_module(mod)
        for part in qual.split("."):
            fn = getattr(fn, part)
        call, verify = fn(**kwargs)
    except Exception:
        return "harness", "building the call failed: " + traceback.format_exc(limit=-3)[-1500:]
    try:
        out = call()
    except MemoryError as e:
        return "hang", f"MemoryError: {e}"[:500]
    except (ValueError, TypeError) as e:
        return "error", f"{type(e).__name__}: {e}"[:2000]
    except (Exception, SystemExit) as e:
        msg = f"{type(e).__name__}: {e}"
        if isinstance(e, RuntimeError) and any(s in str(e) for s in _ALLOC_MESSAGES):
            return "hang", msg[:500]
        return "other", (msg[:600] + "\n" + traceback.format_exc(limit=-4)[-1200:])
    try:
        verify(out)
    except Exception as e:
        name = type(e).__name__
        return "wrong", (f"{name}: {e}"[:800] + ("" if name == "Wrong" else "\n" + traceback.format_exc(limit=-3)[-800:]))
    return "ok", ""


def worker_main() -> None:  # pragma: no cover - runs in the worker
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    inp = os.fdopen(0, "rb", buffering=0)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # library prints go to stderr, never into the protocol
    import warnings

    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(1)
    while True:
        try:
            idx, builder, kwargs = _recv(inp)
        except EOFError:
            return
        torch.manual_seed(0)
        res = _execute(builder, kwargs)
        _send(out, (idx, *res))


_WORKER_CODE = (
    "import sys; sys.path[:0] = [{root!r}, {tests!r}]\n"
    "from fuzz._harness import worker_main\nworker_main()\n"
)


class _Worker:
    def __init__(self):
        self.log = tempfile.TemporaryFile()
        self.tmp = tempfile.mkdtemp(prefix="geodl-fuzz-worker-")  # the worker's TMPDIR, removed with it
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0", TMPDIR=self.tmp)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE.format(root=str(ROOT), tests=str(TESTS))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, preexec_fn=_limit_memory,
            env=env, cwd=tempfile.gettempdir(),
        )
        self.busy: tuple[int, float] | None = None  # (case index, start time)
        self._buf = b""

    def send(self, idx, builder, kwargs):
        _send(self.proc.stdin, (idx, builder, kwargs))
        self.busy = (idx, time.monotonic())

    def fileno(self):
        return self.proc.stdout.fileno()

    def read_available(self):
        """Read what is there; return a reply when a whole frame arrived, None otherwise; raise
        EOFError when the worker died."""
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            raise EOFError
        self._buf += chunk
        if len(self._buf) >= 8:
            (n,) = struct.unpack("<Q", self._buf[:8])
            if len(self._buf) >= 8 + n:
                data, self._buf = self._buf[8:8 + n], self._buf[8 + n:]
                self.busy = None
                return pickle.loads(data)
        return None

    def stderr_tail(self, n=600) -> str:
        try:
            self.log.seek(0, 2)
            size = self.log.tell()
            self.log.seek(max(0, size - n))
            return self.log.read().decode("utf-8", "replace")
        except Exception:  # pragma: no cover
            return ""

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self._cleanup()

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.kill()
        self._cleanup()

    def _cleanup(self):
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


class Pool:
    """Memory-limited worker processes running cases with a wall-clock timeout each."""

    def __init__(self, n: int = WORKERS, timeout: float = TIMEOUT):
        self.n, self.timeout = max(1, n), timeout
        self.workers: list[_Worker] = []

    def _ensure(self):
        while len(self.workers) < self.n:
            self.workers.append(_Worker())

    def map(self, builder: str, cases: list[Case]) -> list[tuple[str, str]]:
        """Raw outcomes of ``cases`` in order."""
        self._ensure()
        results: list = [None] * len(cases)
        todo = list(range(len(cases)))[::-1]
        while todo or any(w.busy for w in self.workers):
            for w in self.workers:
                if w.busy is None and todo:
                    i = todo.pop()
                    try:
                        w.send(i, builder, cases[i].kwargs)
                    except (BrokenPipeError, OSError):
                        todo.append(i)
                        self._replace(w, None)
                        break
            busy = [w for w in self.workers if w.busy]
            if not busy:
                continue
            now = time.monotonic()
            wait = max(0.0, min(w.busy[1] + self.timeout - now for w in busy))
            ready, _, _ = select.select(busy, [], [], wait + 0.01)
            for w in ready:
                idx = w.busy[0]
                try:
                    reply = w.read_available()
                except EOFError:
                    code = w.proc.wait()
                    results[idx] = ("hang", f"worker died (exit {code}): {w.stderr_tail()}")
                    self._replace(w, None)
                    continue
                if reply is not None:
                    results[reply[0]] = (reply[1], reply[2])
            now = time.monotonic()
            for w in list(self.workers):
                if w.busy and now - w.busy[1] > self.timeout:
                    results[w.busy[0]] = ("hang", f"timeout after {self.timeout:.0f} s")
                    self._replace(w, None)
        return results

    def _replace(self, w: _Worker, _):
        w.kill()
        self.workers[self.workers.index(w)] = _Worker()

    def close(self):
        for w in self.workers:
            w.close()
        self.workers = []


_POOL: Pool | None = None


def pool() -> Pool:
    global _POOL
    if _POOL is None:
        _POOL = Pool()
    return _POOL


def close_pool() -> None:
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL = None


# --------------------------------------------------------------------------- classification
def names_argument(msg: str, names) -> bool:
    """The error message names one of ``names`` (at its start, or as a word: ``k:``, ``'k'``, ``k=``)."""
    text = msg.split(": ", 1)[1] if ": " in msg else msg  # drop "ValueError: "
    for name in names:
        if text.startswith(name):
            return True
        if len(name) <= 2:
            if re.search(rf"(?<![\w.]){re.escape(name)}(?=\s*[:=]|['`\"])", text) or f"'{name}'" in text or f"`{name}`" in text:
                return True
        elif re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text):
            return True
    return False


def classify(case: Case, raw: str, detail: str) -> tuple[str, str]:
    """Outcome of one case from the worker's raw outcome."""
    if raw == "harness":
        return "harness", detail
    if raw in ("hang", "other"):
        return raw, detail
    if raw == "wrong":
        return ("wrong", detail) if case.mode in ("valid", "maybe") else ("ok", "")
    if raw == "ok":
        if case.mode == "invalid":
            return "wrong", f"accepted an invalid {'/'.join(case.bad)} ({case.note}) silently"
        return "ok", ""
    # raw == "error": a ValueError / TypeError
    if case.mode == "valid":
        return "other", f"refused a valid input: {detail}"
    if names_argument(detail, case.bad):
        return "clean", ""
    return "other", f"error does not name {'/'.join(case.bad)}: {detail}"


def _short(v, n=160):
    try:
        import torch

        if isinstance(v, torch.Tensor):
            vals = "" if v.device.type == "meta" or v.numel() > 12 else f" {v.tolist()}"
            return f"tensor{tuple(v.shape)} {str(v.dtype).replace('torch.', '')} {v.device.type}{vals}"[:n]
    except Exception:  # pragma: no cover
        pass
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."


def describe(case: Case) -> str:
    args = ", ".join(f"{k}={_short(v)}" for k, v in case.kwargs.items())
    return f"[{case.mode}{' ' + '/'.join(case.bad) if case.bad else ''}{': ' + case.note if case.note else ''}] ({args})"


def run_entry(name: str, n: int | None = None) -> dict:
    """Generate and run the cases of entry ``name``; store and return its counts."""
    entry = REGISTRY[name]
    t0 = time.monotonic()
    cases = generate(entry, n)
    raws = pool().map(entry.builder, cases)
    counts = {"tried": len(cases), **{k: 0 for k in OUTCOMES}, "harness": 0}
    samples: dict[str, list[str]] = {}
    for case, (raw, detail) in zip(cases, raws):
        outcome, why = classify(case, raw, detail)
        counts[outcome] += 1
        if outcome not in ("ok", "clean") and len(samples.setdefault(outcome, [])) < 6:
            samples[outcome].append(f"{describe(case)}\n      -> {why.strip()}")
    rec = {"counts": counts, "samples": samples, "seconds": round(time.monotonic() - t0, 2)}
    RESULTS[name] = rec
    return rec


def check_entry(name: str, n: int | None = None) -> dict:
    """Run entry ``name`` and assert that nothing but ``ok`` and ``clean`` happened."""
    rec = run_entry(name, n)
    c = rec["counts"]
    if c["other"] or c["wrong"] or c["hang"] or c["harness"]:
        lines = [f"{name}: {c}"]
        for outcome, items in rec["samples"].items():
            lines += [f"  {outcome}:"] + [f"    {s}" for s in items]
        raise AssertionError("\n".join(lines))
    assert c["tried"] > 0
    return rec


def totals(results: dict | None = None) -> dict:
    results = RESULTS if results is None else results
    tot = {"tried": 0, **{k: 0 for k in OUTCOMES}, "harness": 0}
    for rec in results.values():
        for k, v in rec["counts"].items():
            tot[k] = tot.get(k, 0) + v
    return tot


def report(results: dict | None = None) -> dict:
    results = RESULTS if results is None else results
    return {"totals": totals(results), "entries": dict(sorted(results.items()))}


def write_report(path, results: dict | None = None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report(results), indent=1, sort_keys=False) + "\n")


# --------------------------------------------------------------------------- the public surface
PACKAGES = ("geodl.ops", "geodl.groups", "geodl.nn", "geodl.nn.backbones", "geodl.nn.frame_averaging",
            "geodl.nn.location", "geodl.nn.tinv", "geodl.nn.apen", "geodl.nn.spherical", "geodl.nn.poincare", "geodl.nn.pose", "geodl.nn.soft_equivariance", "geodl.testing", "geodl.data", "geodl.bench")

# names that take no data: constants, and functions of no arguments (each is still called once by
# test_fuzz_registry.test_excluded_names_behave)
EXCLUDED = {
    "geodl.groups.GROUP_NAMES": "constant tuple of names",
    "geodl.groups.KINDS": "read-only view of the kind registry (constant)",
    "geodl.groups.FINITE_GROUPS": "constant table of finite-group names",
    "geodl.groups.kind_table": "takes no arguments",
    "geodl.testing.CHECKS": "constant tuple of check names",
    "geodl.data.DATASETS": "constant registry of dataset names",
    "geodl.data.default_root": "takes no arguments",
    "geodl.bench.COMMON_FLAGS": "constant tuple of flag names",
    "geodl.bench.TASKS": "constant registry of tasks",
    "geodl.bench.task_summaries": "takes no arguments",
    "geodl.ops.available_backends": "takes no arguments",
    "geodl.ops.get_backend": "takes no arguments",
    "geodl.ops.record_backends": "takes no arguments (a context manager recording dispatch)",
    "geodl.nn.location.ENCODERS": "constant registry of encoder names",
    "geodl.nn.location.NETWORKS": "constant registry of network names",
}


def public_names() -> list[str]:
    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names += [f"{pkg}.{n}" for n in mod.__all__]
    return names


def canonical(name: str) -> str:
    """``geodl.nn.EGNN`` and ``geodl.nn.backbones.EGNN`` are one object: registered once, under the
    name of the deepest package exporting it (e.g. ``geodl.nn.backbones.EGNN``)."""
    pkg, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(pkg), attr)
    best = name
    for other in PACKAGES:
        if other.startswith(pkg + ".") and attr in importlib.import_module(other).__all__:
            if getattr(importlib.import_module(other), attr) is obj:
                best = f"{other}.{attr}"
    return best


# --------------------------------------------------------------------------- strategy helpers
def st():
    from hypothesis import strategies

    return strategies


def seeded_tensor(shape, seed: int, *, dtype=None, scale: float = 1.0):
    import torch

    g = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.float64
    return (torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale).to(dtype)


def poison(x, seed: int):
    """A copy of the float tensor ``x`` (non-empty) with one NaN or inf."""
    import torch

    x = x.contiguous().clone()
    flat = x.view(-1)
    flat[seed % flat.numel()] = [float("nan"), float("inf"), -float("inf")][seed % 3]
    return x


def bad_ints(valid_max: int | None = None, *, none_ok: bool = False, zero_ok: bool = False, negative_ok=False):
    """Values that an int argument must refuse."""
    out = [True, False, 2.5, "3", HUGE if valid_max is None else max(HUGE, valid_max * 10), -(10**12)]
    if not negative_ok:
        out.append(-1)
    if not zero_ok:
        out.append(0)
    if not none_ok:
        out.append(None)
    return out


BAD_FLOAT_DTYPES = ("int64", "bool", "complex64")


@dataclass(frozen=True)
class Mut:
    """One way to break an argument: ``fn(kwargs) -> new value`` (a plain value is used as is)."""

    note: str
    fn: object
    mode: str = "invalid"
    names: tuple = ()  # names the error may give (default: the argument's own name)


def values(*vals, mode="invalid", names=()):
    """Mutations replacing an argument by each of ``vals``."""
    return [Mut(repr(v)[:40], v, mode, names) for v in vals]


def tensor_muts(arg: str, *, floating: bool = True, index: bool = False, shapes: dict | None = None,
                nonfinite: bool = True, none_ok: bool = False, meta: bool = False, names=(), dtype_mode="invalid"):
    """Standard breakages of a tensor argument: wrong dtypes, wrong shapes (``shapes``: note ->
    fn(x)), a string / None instead of a tensor, one NaN/inf (``nonfinite``), a tensor on the meta
    device (``meta``: a device unlike the other arguments')."""
    import torch

    muts = [Mut("a string", "abc", names=names)]
    if not none_ok:
        muts.append(Mut("None", None, names=names))
    if floating:
        muts.append(Mut("int64 dtype", lambda kw: kw[arg].to(torch.int64), names=names, mode=dtype_mode))
        if dtype_mode == "invalid":
            muts += [Mut("bool dtype", lambda kw: kw[arg] > 0, names=names),
                     Mut("complex dtype", lambda kw: kw[arg].to(torch.complex64), names=names)]
    if index:
        muts += [Mut("float dtype", lambda kw: kw[arg].to(torch.float32), names=names),
                 Mut("bool dtype", lambda kw: kw[arg] > 0, names=names)]
    for note, fn in (shapes or {}).items():
        muts.append(Mut(note, (lambda kw, fn=fn: fn(kw[arg])), names=names))
    if nonfinite and floating:
        muts.append(Mut("a NaN/inf entry", lambda kw: poison(kw[arg], 7) if kw[arg].numel() else kw[arg],
                        mode="nonfinite", names=names))
    if meta:
        muts.append(Mut("on the meta device", lambda kw: kw[arg].to("meta"), names=names))
    return muts


def _is_lambda(f):
    return callable(f) and getattr(f, "__name__", "") == "<lambda>"


def cases(valid, mutations: dict, *, valid_share: float = 0.4):
    """A strategy of :class:`Case`: a valid keyword set drawn from ``valid`` (a strategy of dicts,
    or of ``(dict, mode, bad)`` tuples for inputs that may be refused), or the same with one
    argument broken by one of ``mutations[arg]`` (a list of :class:`Mut`)."""
    s = st()
    flat = [(arg, m) for arg, ms in mutations.items() for m in ms]

    @s.composite
    def draw_case(draw):
        kw = draw(valid)
        mode, bad, note = "valid", (), ""
        if isinstance(kw, tuple):
            kw, mode, bad = kw
            note = "may be refused"
        if not flat or draw(s.integers(0, 99)) < 100 * valid_share:
            return Case(dict(kw), mode, tuple(bad), note)
        arg, m = flat[draw(s.integers(0, len(flat) - 1))]
        kw = dict(kw)
        try:
            kw[arg] = m.fn(kw) if _is_lambda(m.fn) else m.fn
        except (AttributeError, TypeError, IndexError, ValueError, RuntimeError):
            return Case(dict(kw), mode, tuple(bad), note)  # this breakage does not apply (e.g. batch=None)
        bad_names = tuple(m.names) or (arg,)
        if mode == "maybe":  # the base input may itself be refused
            bad_names = tuple(dict.fromkeys(bad_names + tuple(bad)))
        return Case(kw, m.mode, bad_names, f"{arg}: {m.note}")

    return draw_case()
