"""The back-end switch of geodl.ops: one switch for every op, read per call, and a record of what ran.

The Triton kernels run on CPU tensors only under ``TRITON_INTERPRET=1`` set before triton is
imported, so the cases that need them run in a fresh interpreter (``_triton_interp``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _triton_interp import run_interpreted, run_pytest  # tests/ops helper (pytest puts this folder on sys.path)

import geodl.ops as ops
from geodl.ops import available_backends, get_backend, record_backends, scatter, set_backend, use_backend
from geodl.ops import _dispatch

# the switch itself; every other public name of geodl.ops is an op
SWITCH = {"available_backends", "get_backend", "set_backend", "use_backend", "record_backends"}

# Every public op once, on tiny float32 inputs on device ``dev``.
_CALLS = r"""
g = torch.Generator().manual_seed(0)
x = torch.randn(6, 2, generator=g).to(dev)
index, ptr = torch.tensor([0, 2, 2, 1, 0, 2], device=dev), torch.tensor([0, 2, 2, 6], device=dev)
pos = torch.randn(8, 3, generator=g).to(dev)
batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], device=dev)
A = torch.randn(2, 3, 3, generator=g).to(dev)
calls = {
    "scatter": lambda: ops.scatter(x, index, dim_size=3),
    "segment": lambda: ops.segment(x, ptr),
    "gather": lambda: ops.gather(x, index),
    "gather_csr": lambda: ops.gather_csr(x[:3], ptr, 6),
    "scatter_softmax": lambda: ops.scatter_softmax(x, index, dim_size=3),
    "scatter_logsumexp": lambda: ops.scatter_logsumexp(x, index, dim_size=3),
    "scatter_log_softmax": lambda: ops.scatter_log_softmax(x, index, dim_size=3),
    "scatter_std": lambda: ops.scatter_std(x, index, dim_size=3),
    "eigh3x3": lambda: ops.eigh3x3(A + A.mT),
    "segment_covariance": lambda: ops.segment_covariance(pos, batch, 2),
    "knn_graph": lambda: ops.knn_graph(pos, 2, batch),
    "radius_graph": lambda: ops.radius_graph(pos, 1.5, batch),
    "farthest_point_sampling": lambda: ops.farthest_point_sampling(pos, 0.5, batch),
    "spherical_harmonics": lambda: ops.spherical_harmonics(3, pos),
}
"""

# Prints {op: back end} as JSON for each setting of SETTINGS, on CPU tensors.
_TABLE_SCRIPT = r"""
import json, os, torch
import geodl.ops as ops
from geodl.ops import record_backends, use_backend
dev = "cpu"
""" + _CALLS + r"""
tables, reference = {}, None
for setting in os.environ["SETTINGS"].split(","):
    backend, _, disable = setting.partition("+")
    if disable:  # read per call: set in this running process, after the kernels were imported
        os.environ["GEODL_DISABLE_TRITON"] = "1"
    ran, results = {}, {}
    for name, call in calls.items():
        with use_backend(backend), record_backends() as rec:
            results[name] = call()
        ran[name] = rec[name]
    tables[setting] = ran
    if setting == "torch":
        reference = results
    elif reference is not None:  # the same numbers as the torch reference (edges and samples identical)
        for name, out in results.items():
            for a, b in zip(out if isinstance(out, tuple) else (out,),
                            reference[name] if isinstance(out, tuple) else (reference[name],)):
                assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), (setting, name)
print(json.dumps({"ops": sorted(calls), "tables": tables}))
print("ok")
"""


def _table(settings: str, **env) -> dict:
    out = run_interpreted(_TABLE_SCRIPT, SETTINGS=settings, **env)
    return json.loads(out.splitlines()[-2])


def _public_ops():
    return sorted(set(ops.__all__) - SWITCH)


def test_every_public_op_is_registered_once():
    assert _dispatch.public_ops() == _public_ops()
    table = available_backends()
    assert sorted(table) == _public_ops() and all(b[0] == "torch" for b in table.values())
    has_triton = _dispatch.triton_importable()
    for name in _public_ops():  # every op has a Triton kernel (segment_covariance through scatter)
        assert any("triton" in b for b in table[name]) == has_triton, name


def test_backend_table_under_the_interpreter():
    """With TRITON_INTERPRET=1 and backend "triton", every op reports "triton" on CPU tensors
    (and gives the torch reference's numbers); with GEODL_DISABLE_TRITON=1 added -- in the
    environment from the start, or set between two calls of the same process -- every op reports
    "torch"; "auto" on CPU tensors is "torch"."""
    pytest.importorskip("triton")
    got = _table("torch,auto,triton,triton+disable")
    assert got["ops"] == _public_ops()  # the table covers every public op of geodl.ops
    tables = got["tables"]
    assert set(tables["triton"].values()) == {"triton"}, tables["triton"]
    for setting in ("torch", "auto", "triton+disable"):
        assert set(tables[setting].values()) == {"torch"}, (setting, tables[setting])
    disabled = _table("triton", GEODL_DISABLE_TRITON="1")["tables"]["triton"]
    assert set(disabled.values()) == {"torch"}, disabled


def test_core_op_tests_on_the_triton_backend():
    """The op tests that take the ``backend`` fixture (and the kernel tests of test_scatter.py),
    rerun under the interpreter with backend "triton": one correctness run of every op per back end."""
    pytest.importorskip("triton")
    here = Path(__file__).parent
    files = [str(here / f) for f in ("test_scatter.py", "test_eigh.py", "test_neighbors.py", "test_sh.py",
                                     "test_sh_e3nn.py", "test_sh_numerics.py")]
    run_pytest(["-k", "triton and not interpreted and not cuda", *files])


def test_switch_api_and_errors():
    assert get_backend() == "auto"
    with use_backend("torch"):
        assert get_backend() == "torch"
        with use_backend("triton"):
            assert get_backend() == "triton"
        assert get_backend() == "torch"
    assert get_backend() == "auto"
    with pytest.raises(ValueError, match="backend"):
        set_backend("cuda")
    with pytest.raises(ValueError, match="backend"):
        with use_backend("fast"):
            pass
    assert get_backend() == "auto"


def test_triton_on_cpu_without_interpreter_raises_and_disable_is_read_per_call(monkeypatch):
    if _dispatch.interpreting():
        pytest.skip("this process runs the Triton interpreter")
    x, index = torch.ones(4, 2), torch.tensor([0, 1, 1, 0])
    monkeypatch.delenv("GEODL_DISABLE_TRITON", raising=False)
    with use_backend("triton"):
        with pytest.raises(RuntimeError, match="triton"):
            scatter(x, index, dim_size=2)
        monkeypatch.setenv("GEODL_DISABLE_TRITON", "1")  # read on the next call, not at import
        with record_backends() as ran:
            out = scatter(x, index, dim_size=2)
        assert ran == {"geodl::scatter_sum": "torch", "scatter": "torch"}
        monkeypatch.setenv("GEODL_DISABLE_TRITON", "0")
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
            scatter(x, index, dim_size=2)
    assert torch.equal(out, torch.full((2, 2), 2.0))


def test_record_names_public_ops_and_kernels():
    x, index = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 2])
    with record_backends() as ran:
        scatter(x, index, dim_size=3, reduce="mul")  # plain torch, no registered kernel
        ops.scatter_softmax(x, index, dim_size=3)
        ops.segment_covariance(torch.randn(5, 3), index, 3)  # nested: runs scatter
    assert ran["scatter"] == "torch" and ran["scatter_softmax"] == "torch"
    assert ran["segment_covariance"] == "torch"
    assert {"geodl::scatter_minmax", "geodl::gather_rows", "geodl::scatter_sum"} <= set(ran)
    with record_backends() as outer:
        pass
    assert outer == {}
    assert not _dispatch._RECORDS and not _dispatch._OPS  # nothing left open


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_runs_triton_for_every_op_on_cuda():
    """On CUDA (float32 inputs) the default "auto" runs every op's Triton kernel; "torch" none."""
    pytest.importorskip("triton")
    namespace = {"torch": torch, "ops": ops, "dev": "cuda"}
    exec(_CALLS, namespace)
    calls = namespace["calls"]
    assert sorted(calls) == _public_ops()
    for backend, want in (("auto", "triton"), ("torch", "torch")):
        with use_backend(backend), record_backends() as ran:
            for call in calls.values():
                call()
        assert {ran[name] for name in calls} == {want}, (backend, ran)


def test_record_under_torch_compile_sees_the_kernels():
    f = torch.compile(lambda x, i: scatter(x, i, dim_size=3) * 2, fullgraph=True, backend="aot_eager")
    x, index = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    with record_backends() as ran:
        out = f(x, index)
    assert ran == {"geodl::scatter_sum": "torch"}
    torch.testing.assert_close(out, 2 * scatter(x, index, dim_size=3))
