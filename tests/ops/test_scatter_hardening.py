"""Hardening of the scatter family: malformed pointers and indices, oversize requests, empty inputs.

Cases that could crash the interpreter or allocate without bound on a broken implementation (a
pointer past the end of ``src`` reaches native code unchecked; a huge ``dim_size`` allocates it)
run in a child process with its address space limited (``resource.setrlimit`` in ``preexec_fn``),
which prints one line per case; the parent asserts on those lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from geodl.ops import gather, gather_csr, scatter, scatter_logsumexp, scatter_softmax, segment, segment_covariance
from geodl import _checks as S

_AS_LIMIT = 6 << 30  # address space of the child: enough for torch, far below the requests tested


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, _AS_LIMIT))


def _run_cases(cases: dict[str, str]) -> dict[str, str]:
    """Run each expression of ``cases`` in one memory-limited child; ``name -> "ok"`` or
    ``"ExceptionType: message"``. A crash of the child fails the test with its exit status."""
    body = "\n".join(f"run({name!r}, lambda: {expr})" for name, expr in cases.items())
    code = textwrap.dedent("""
        import json, sys, torch
        from geodl.ops import gather, gather_csr, scatter, scatter_logsumexp, scatter_softmax, segment
        from geodl.ops import segment_covariance
        def run(name, fn):
            try:
                fn()
                res = "ok"
            except Exception as e:
                res = f"{type(e).__name__}: {e}"
            print(json.dumps([name, res]), flush=True)
    """) + body
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stdout[-1000:]} {proc.stderr[-2000:]}"
    return dict(json.loads(line) for line in proc.stdout.splitlines())


# --------------------------------------------------------------------------- malformed pointers
_PTR_CASES = {
    "segment_huge_end": "segment(torch.arange(4.), torch.tensor([0, 10**9]))",
    "segment_huge_end_max": "segment(torch.arange(4.), torch.tensor([0, 10**9]), 'max')",
    "segment_negative_start": "segment(torch.arange(4.), torch.tensor([-2, 4]))",
    "segment_negative_start_min": "segment(torch.arange(4.).view(4, 1), torch.tensor([-2, 1, 4]), 'min')",
    "segment_positive_start": "segment(torch.arange(4.), torch.tensor([1, 4]))",
    "segment_decreasing": "segment(torch.arange(4.), torch.tensor([0, 3, 1, 4]), 'mean')",
    "segment_small_overrun": "segment(torch.arange(4.), torch.tensor([0, 2, 5]))",
    "segment_small_overrun_max": "segment(torch.arange(4.), torch.tensor([0, 2, 5]), 'max')",
    "segment_underrun": "segment(torch.arange(4.), torch.tensor([0, 2, 3]))",
    "gather_csr_huge_end": "gather_csr(torch.ones(2), torch.tensor([0, 1, 10**9]), size=4)",
    "gather_csr_overrun": "gather_csr(torch.ones(2), torch.tensor([0, 1, 5]), size=4)",
    "gather_csr_negative": "gather_csr(torch.ones(2), torch.tensor([-1, 1, 4]), size=4)",
    "gather_csr_decreasing": "gather_csr(torch.ones(2), torch.tensor([0, 3, 2]))",
}


def test_malformed_ptr_raises_value_error_naming_ptr():
    got = _run_cases(_PTR_CASES)
    for name in _PTR_CASES:
        assert got[name].startswith("ValueError: ptr:"), (name, got[name])


# --------------------------------------------------------------------------- oversize requests
_BIG = 10**12  # rows: terabytes of output for any row size
_SIZE_CASES = {
    **{f"scatter_dim_size_{r}": f"scatter(torch.ones(3, 8), torch.tensor([0, 1, 2]), dim_size={_BIG}, reduce={r!r})"
       for r in ("sum", "mean", "max", "min", "mul")},
    "scatter_dim_size_deterministic": f"scatter(torch.ones(3, 8), torch.tensor([0, 1, 2]), dim_size={_BIG}, "
                                      "deterministic=True)",
    **{f"scatter_index_{r}": f"scatter(torch.ones(3, 8), torch.tensor([0, 1, {_BIG}]), reduce={r!r})"
       for r in ("sum", "mean", "max", "mul")},
    "softmax_dim_size": f"scatter_softmax(torch.ones(3), torch.tensor([0, 1, 2]), dim_size={_BIG})",
    "softmax_index": f"scatter_softmax(torch.ones(3), torch.tensor([0, 1, {_BIG}]))",
    "logsumexp_dim_size": f"scatter_logsumexp(torch.ones(3), torch.tensor([0, 1, 2]), dim_size={_BIG})",
    "logsumexp_index": f"scatter_logsumexp(torch.ones(3), torch.tensor([0, 1, {_BIG}]))",
    "gather_csr_size": f"gather_csr(torch.ones(1, 8), torch.tensor([0, {_BIG}]), size={_BIG})",
    "gather_csr_ptr": f"gather_csr(torch.ones(1, 8), torch.tensor([0, {_BIG}]))",
    "covariance_num_segments": f"segment_covariance(torch.ones(3, 3), torch.tensor([0, 1, 1]), num_segments={_BIG})",
    "covariance_batch": f"segment_covariance(torch.ones(3, 3), torch.tensor([0, 1, {_BIG}]))",
}


def _expected_name(case: str) -> str:
    """The argument the error of ``case`` must name."""
    special = {"gather_csr_size": "size", "gather_csr_ptr": "ptr", "covariance_batch": "batch"}
    if case in special:
        return special[case]
    return "num_segments" if "num_segments" in case else "dim_size" if "dim_size" in case else "index"


def test_oversize_requests_raise_before_allocating():
    got = _run_cases(_SIZE_CASES)
    for name in _SIZE_CASES:
        arg = _expected_name(name)
        assert got[name].startswith(f"ValueError: {arg}:"), (name, got[name])
        assert "GiB of memory" in got[name] and "available" in got[name], (name, got[name])


def test_size_limit_follows_available_memory(monkeypatch):
    """The check compares with the memory available on the device (here made tiny), and says how
    much the request would need; requests below the threshold are not looked at."""
    src, index = torch.ones(3, 8), torch.tensor([0, 1, 2])
    monkeypatch.setattr(S, "_CHECKED_BYTES", 0)
    monkeypatch.setattr(S, "_available_bytes", lambda device: 1000)
    with pytest.raises(ValueError, match=r"^dim_size: 100 .*would need .* GiB of memory"):
        scatter(src, index, dim_size=100)
    with pytest.raises(ValueError, match=r"^index: "):
        gather(src, torch.zeros(100, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^ptr: "):
        segment(torch.ones(100, 8), torch.arange(101))
    assert scatter(src, index, dim_size=4).shape == (4, 8)  # 128 bytes: fits
    monkeypatch.setattr(S, "_CHECKED_BYTES", 1 << 30)
    assert scatter(src, index, dim_size=100).shape == (100, 8)  # below the threshold: not checked


def test_available_bytes_is_positive():
    assert S._available_bytes(torch.device("cpu")) > 0


# --------------------------------------------------------------------------- index values (CPU: always checked)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
@pytest.mark.parametrize("bad", [-1, 3, 10**6])
def test_scatter_index_out_of_range_raises(reduce, bad):
    index = torch.tensor([0, bad, 2])
    with pytest.raises(ValueError, match=r"^index: "):
        scatter(torch.ones(3, 2), index, dim_size=3, reduce=reduce)
    if bad < 0:
        with pytest.raises(ValueError, match=r"^index: values must be non-negative"):
            scatter(torch.ones(3, 2), index, reduce=reduce)


@pytest.mark.parametrize("fn", [scatter_softmax, scatter_logsumexp])
def test_softmax_index_out_of_range_raises(fn):
    for bad in (-1, 2):
        with pytest.raises(ValueError, match=r"^index: "):
            fn(torch.ones(3), torch.tensor([0, bad, 1]), dim_size=2)


def test_gather_index_out_of_range_raises():
    for bad in (-1, 3):
        with pytest.raises(ValueError, match=r"^index: values must lie in \[0, 3\)"):
            gather(torch.ones(3, 2), torch.tensor([0, bad]))


def test_gather_csr_size_mismatch_raises():
    with pytest.raises(ValueError, match=r"^ptr: expected ptr\[-1\] == 2 \(size"):
        gather_csr(torch.ones(2), torch.tensor([0, 1, 3]), size=2)


# --------------------------------------------------------------------------- empty inputs
_E = torch.zeros(0, dtype=torch.long)


def _grad_of(out, src):
    out.sum().backward()
    return src.grad


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "mul"])
def test_scatter_empty_src(reduce):
    src = torch.zeros(0, 4, dtype=torch.float64, requires_grad=True)
    out = scatter(src, _E, dim_size=3, reduce=reduce)
    fill = 1.0 if reduce == "mul" else 0.0  # empty groups: 0 (PyG's fill for max/min too), 1 for mul as PyG
    assert out.shape == (3, 4) and (out == fill).all()
    assert _grad_of(out, src).shape == (0, 4)
    assert scatter(torch.zeros(0, 4), _E, reduce=reduce).shape == (0, 4)  # dim_size from an empty index: 0
    # along another dimension, trailing sizes kept
    src2 = torch.zeros(2, 0, 5, requires_grad=True)
    out2 = scatter(src2, _E, dim=1, dim_size=3, reduce=reduce)
    assert out2.shape == (2, 3, 5) and (out2 == fill).all()
    assert _grad_of(out2, src2).shape == (2, 0, 5)


@pytest.mark.parametrize("reduce", ["max", "min"])
def test_scatter_empty_src_arg(reduce):
    out, arg = scatter(torch.zeros(0, 2), _E, dim_size=3, reduce=reduce, return_arg=True)
    assert out.shape == arg.shape == (3, 2) and (arg == 0).all()  # N = 0: the out-of-range sentinel


def test_scatter_deterministic_empty():
    src = torch.zeros(0, 3, requires_grad=True)
    out = scatter(src, _E, dim_size=2, reduce="mean", deterministic=True)
    assert out.shape == (2, 3) and (out == 0).all() and _grad_of(out, src).shape == (0, 3)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_segment_empty(reduce):
    src = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    out = segment(src, torch.tensor([0, 0, 0]), reduce)
    assert out.shape == (2, 3) and (out == 0).all()
    assert _grad_of(out, src).shape == (0, 3)
    assert segment(torch.zeros(0, 3), torch.tensor([0]), reduce).shape == (0, 3)  # no segments at all
    # a batch with an empty graph in the middle, 1-D src
    src1 = torch.tensor([1.0, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    out1 = segment(src1, torch.tensor([0, 2, 2, 3]), reduce)
    assert out1[1] == 0
    assert _grad_of(out1, src1).shape == (3,)


def test_segment_empty_arg():
    out, arg = segment(torch.zeros(0, 2), torch.tensor([0, 0]), "max", return_arg=True)
    assert out.shape == arg.shape == (1, 2) and (arg == 0).all()


def test_gather_and_gather_csr_empty():
    src = torch.zeros(0, 3, requires_grad=True)
    out = gather(src, _E)
    assert out.shape == (0, 3) and _grad_of(out, src).shape == (0, 3)
    src = torch.ones(4, 3, requires_grad=True)
    out = gather(src, _E)  # nothing selected from a non-empty src
    assert out.shape == (0, 3) and (_grad_of(out, src) == 0).all()
    src = torch.zeros(0, 3, requires_grad=True)
    out = gather_csr(src, torch.tensor([0]))
    assert out.shape == (0, 3) and _grad_of(out, src).shape == (0, 3)
    src = torch.ones(2, 3, requires_grad=True)
    out = gather_csr(src, torch.tensor([0, 0, 0]))  # every segment empty
    assert out.shape == (0, 3) and (_grad_of(out, src) == 0).all()


@pytest.mark.parametrize("fn", [scatter_softmax, scatter_logsumexp])
def test_softmax_family_empty(fn):
    src = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    out = fn(src, _E, dim_size=2)
    assert out.shape == ((0, 3) if fn is scatter_softmax else (2, 3))
    assert (out == 0).all()
    assert _grad_of(out, src).shape == (0, 3)
    assert fn(torch.zeros(0), _E).shape == (0,)


def test_graph_without_edges_message_passing():
    """x (5, 4) and an edge_index of shape (2, 0): messages are empty, aggregates are zero, and the
    gradient reaches x with its shape."""
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    edge_index = torch.zeros(2, 0, dtype=torch.long)
    msg = gather(x, edge_index[0])
    alpha = scatter_softmax(msg.sum(1), edge_index[1], dim_size=5)
    agg = scatter(msg * alpha[:, None], edge_index[1], dim_size=5, reduce="sum")
    pooled = scatter(msg, edge_index[1], dim_size=5, reduce="max")
    out = agg + pooled + scatter_logsumexp(msg, edge_index[1], dim_size=5)
    assert out.shape == (5, 4) and (out == 0).all()
    out.sum().backward()
    assert x.grad.shape == (5, 4) and (x.grad == 0).all()


def test_segment_covariance_empty():
    pos = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    c, cov, n = segment_covariance(pos)
    assert c.shape == (1, 3) and cov.shape == (1, 3, 3) and n.tolist() == [0]
    assert (c == 0).all() and (cov == 0).all()
    c, cov, n = segment_covariance(pos, _E, num_segments=2)
    assert cov.shape == (2, 3, 3) and (cov == 0).all() and n.tolist() == [0, 0]
    (c.sum() + cov.sum()).backward()
    assert pos.grad.shape == (0, 3)
    c, cov, n = segment_covariance(torch.zeros(0, 2), _E)
    assert c.shape == (0, 2) and cov.shape == (0, 2, 2) and n.shape == (0,)
    # a batch with an empty cloud in the middle
    pos = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]])
    c, cov, n = segment_covariance(pos, torch.tensor([0, 0, 2]), num_segments=3)
    assert n.tolist() == [2, 0, 1] and (c[1] == 0).all() and (cov[1] == 0).all()


# --------------------------------------------------------------------------- compile: value checks skipped
def test_compile_fullgraph_with_checks():
    """The value checks (which read tensors) are skipped while tracing, so fullgraph compiles."""

    def f(x, index, ptr):
        a = scatter(x, index, dim_size=3, reduce="mean")
        b = scatter_softmax(x, index, dim_size=3)
        c = gather(a, index) + gather_csr(segment(x, ptr, "max"), ptr, size=4)
        return a.sum() + b.sum() + c.sum()

    x = torch.randn(4, 2)
    index, ptr = torch.tensor([0, 0, 2, 2]), torch.tensor([0, 2, 2, 4])
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x, index, ptr), f(x, index, ptr))


# --------------------------------------------------------------------------- the Triton path (interpreter)
_TRITON_EMPTY = """
import torch
from geodl.ops import gather, gather_csr, record_backends, scatter, scatter_logsumexp, scatter_softmax, segment
from geodl.ops import use_backend
e = torch.zeros(0, dtype=torch.long)
with use_backend("triton"), record_backends() as ran:
    for reduce in ("sum", "mean", "max", "min"):
        src = torch.zeros(0, 3, requires_grad=True)
        out = scatter(src, e, dim_size=2, reduce=reduce) + segment(src, torch.tensor([0, 0, 0]), reduce)
        out = out + scatter_logsumexp(src, e, dim_size=2)
        out.sum().backward()
        assert out.shape == (2, 3) and bool((out == 0).all()) and src.grad.shape == (0, 3), reduce
    x = torch.ones(4, 3, requires_grad=True)
    msg = gather(x, e) * scatter_softmax(gather(x, e), e, dim_size=4)
    agg = scatter(msg, e, dim_size=4) + gather_csr(x[:0], torch.tensor([0]), size=0).sum()
    agg.sum().backward()
    assert agg.shape == (4, 3) and bool((x.grad == 0).all())
    try:
        segment(torch.arange(4.), torch.tensor([0, 10**9]))
    except ValueError as err:
        assert str(err).startswith("ptr:"), err
    else:
        raise AssertionError("no error")
assert ran["geodl::scatter_sum"] == "triton" and ran["geodl::segment_minmax"] == "triton", ran
print("ok")
"""


def test_empty_inputs_on_the_triton_path():
    pytest.importorskip("triton")
    from _triton_interp import run_interpreted  # tests/ops helper (pytest puts this folder on sys.path)

    run_interpreted(_TRITON_EMPTY)


# --------------------------------------------------------------------------- fuzz (child process)
_FUZZ = """
import json, torch
from hypothesis import given, settings, strategies as st, HealthCheck
from geodl.ops import gather, gather_csr, scatter, segment
counts = {"tried": 0, "clean_error": 0, "other_error": 0, "wrong": 0}
bad = []

def ref_reduce(vals, reduce, f):
    if not vals:
        return [0.0] * f
    cols = list(zip(*vals))
    if reduce == "sum":
        return [sum(c) for c in cols]
    if reduce == "mean":
        return [sum(c) / len(c) for c in cols]
    return [max(c) if reduce == "max" else min(c) for c in cols]

def classify(fn, valid, expect, names):
    counts["tried"] += 1
    try:
        out = fn()
    except (ValueError, TypeError) as e:
        if not valid and str(e).split(":")[0] in names:
            counts["clean_error"] += 1
        else:
            counts["other_error"] += 1; bad.append(repr(e)[:200])
        return
    except Exception as e:
        counts["other_error"] += 1; bad.append(repr(e)[:200]); return
    if not valid or out.tolist() != expect:
        counts["wrong"] += 1; bad.append(("wrong", valid, out.tolist(), expect))

@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(n=st.integers(0, 5), f=st.integers(0, 2), s=st.integers(0, 5), data=st.data(),
       reduce=st.sampled_from(["sum", "mean", "max", "min"]))
def run(n, f, s, data, reduce):
    src = torch.arange(n * f, dtype=torch.float64).reshape(n, f) * 0.5 - 1.0
    rows = src.tolist()
    idx = data.draw(st.lists(st.integers(-2, s + 1), min_size=n, max_size=n))
    index = torch.tensor(idx, dtype=torch.long)
    valid = all(0 <= i < s for i in idx)
    expect = [ref_reduce([rows[j] for j in range(n) if idx[j] == g], reduce, f) for g in range(s)]
    classify(lambda: scatter(src, index, dim_size=s, reduce=reduce), valid, expect, ("index",))
    valid_g = all(0 <= i < n for i in idx)
    classify(lambda: gather(src, index), valid_g, [rows[i] for i in idx] if valid_g else None, ("index",))
    if data.draw(st.booleans()):  # a valid pointer
        cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=max(s - 1, 0), max_size=max(s - 1, 0))))
        ptr = [0] + cuts + [n] if s or n else [0]
    else:
        ptr = data.draw(st.lists(st.integers(-3, n + 3), min_size=1, max_size=s + 2))
    okp = ptr[0] == 0 and ptr[-1] == n and all(a <= b for a, b in zip(ptr, ptr[1:]))
    ptr_t = torch.tensor(ptr, dtype=torch.long)
    expect_s = [ref_reduce(rows[a:b], reduce, f) for a, b in zip(ptr, ptr[1:])] if okp else None
    classify(lambda: segment(src, ptr_t, reduce), okp, expect_s, ("ptr",))
    seg_src = torch.arange((len(ptr) - 1) * f, dtype=torch.float64).reshape(len(ptr) - 1, f)
    srows = seg_src.tolist()
    expect_c = [srows[k] for k, (a, b) in enumerate(zip(ptr, ptr[1:])) for _ in range(b - a)] if okp else None
    classify(lambda: gather_csr(seg_src, ptr_t, size=n), okp, expect_c, ("ptr",))

run()
print(json.dumps({"counts": counts, "bad": bad[:5]}))
"""


def test_fuzz_scatter_family_in_a_child():
    """Generated valid and malformed indices / pointers (sizes 0 included): every call either
    matches a loop reference exactly or raises a ValueError naming ``index`` / ``ptr``."""
    pytest.importorskip("hypothesis")
    proc = subprocess.run([sys.executable, "-c", _FUZZ], capture_output=True, text=True, timeout=300,
                          preexec_fn=_limit_memory, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, f"child exited with {proc.returncode}: {proc.stderr[-2000:]}"
    report = json.loads(proc.stdout.splitlines()[-1])
    counts = report["counts"]
    assert counts["tried"] >= 1000 and counts["clean_error"] > 100, counts
    assert counts["other_error"] == 0 and counts["wrong"] == 0, report
