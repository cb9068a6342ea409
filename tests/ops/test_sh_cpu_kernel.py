"""The C kernel of the CPU spherical-harmonics forward (geodl.ops._sh_cpu): the same values as the
torch forward, any input strides, threads, the fallback, and the build cache."""

import math
import os
import time
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

import geodl.ops._sh as sh
import geodl.ops._sh_cpu as csh
from geodl.ops import spherical_harmonics

_TOL = {torch.float32: dict(rtol=1e-6, atol=1e-7), torch.float64: dict(rtol=1e-13, atol=1e-14)}
needs_kernel = pytest.mark.skipif(csh._compiler() is None, reason="needs a C compiler")


def _unit(n, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    special = torch.tensor([[0, 0, 1], [0, 0, -1], [-1, 0, 0], [-1, 1e-7, 0.3], [1e-6, 0, 1]], dtype=torch.float64)
    x = torch.cat([special, x])
    return (x / x.norm(dim=1, keepdim=True)).to(dtype)


def _kernel(x, lmax):
    y = csh.sh_real_cpu(x, lmax, sh._empty_output)
    assert y is not None, csh.kernel_info()
    return y


@pytest.fixture
def fresh_state(monkeypatch):
    """An empty build state (the next call builds or loads the kernel again); restored afterwards."""
    saved = dict(csh._state)
    csh._state.clear()
    yield csh._state
    csh._state.clear()
    csh._state.update(saved)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 10, 20, 33])
def test_same_values_as_the_torch_forward(lmax, dtype):
    x = _unit(1037, dtype, seed=lmax)  # 1042 points: not a multiple of the 256-point block
    y = _kernel(x, lmax)
    ref = sh._sh_real_forward(x, lmax)
    assert y.shape == ref.shape == (1042, (lmax + 1) ** 2) and y.dtype == dtype
    assert y.stride() == ref.stride() == (1, 1042)  # the transposed view of a (K, N) buffer
    torch.testing.assert_close(y, ref, **_TOL[dtype])
    # and the autograd reference (the other route: P̄ rows times cos/sin rows)
    torch.testing.assert_close(y, sh._sh_real_reference(x, lmax), rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-13)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_output_streaming_path(dtype):
    # 441 x 5001 float32 = 8.8 MB, at the streaming-store + populate threshold; odd N: rows unaligned
    n = 5001 if dtype == torch.float32 else 2601
    x = _unit(n - 5, dtype, seed=3)
    y = _kernel(x, 20)
    assert csh._flags(y.t()) == 3
    torch.testing.assert_close(y, sh._sh_real_forward(x, 20), **_TOL[dtype])


@needs_kernel
def test_empty_and_single_point():
    for lmax in (0, 3):
        y = _kernel(torch.zeros(0, 3), lmax)
        assert y.shape == (0, (lmax + 1) ** 2)
    x = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    y = _kernel(x, 2)
    assert math.isclose(float(y[0, 0]), 1 / math.sqrt(4 * math.pi), rel_tol=1e-15)
    assert math.isclose(float(y[0, 2]), math.sqrt(3 / (4 * math.pi)), rel_tol=1e-15)


@needs_kernel
def test_any_input_strides():
    base = _unit(700, torch.float64, seed=5)
    ref = sh._sh_real_forward(base, 6)
    wide = torch.cat([base, torch.full((705, 1), 7.0, dtype=torch.float64)], 1)[:, :3]  # row stride 4
    column_major = base.t().contiguous().t()  # stride (1, N)
    for view in (wide, column_major):
        assert not view.is_contiguous()
        torch.testing.assert_close(_kernel(view, 6), ref, rtol=0, atol=0)
    every_other = torch.cat([base, base])[::2]
    torch.testing.assert_close(_kernel(every_other, 6), sh._sh_real_forward(every_other.contiguous(), 6), rtol=0, atol=0)
    same = base[:1].expand(300, 3)  # stride 0 along the points
    y = _kernel(same, 6)
    assert torch.equal(y, ref[:1].expand(300, -1))


@needs_kernel
def test_thread_counts_give_the_same_values():
    x = _unit(20000, torch.float32, seed=7)
    old = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            assert csh._threads(20005 * 121) == t  # honours torch.get_num_threads()
            outs.append(_kernel(x, 10))
        torch.set_num_threads(4)
        assert csh._threads(1000) == 1  # small calls stay on one thread
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


@needs_kernel
def test_python_threads_at_once():
    x = _unit(3000, torch.float64, seed=8)
    ref = _kernel(x, 12)
    got = [None] * 4

    def work(i):
        got[i] = _kernel(x, 12)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(g, ref) for g in got)


@needs_kernel
def test_spherical_harmonics_runs_the_kernel_and_the_env_var_falls_back(monkeypatch):
    calls = []
    forward = sh._sh_real_forward
    monkeypatch.setattr(sh, "_sh_real_forward", lambda *a: calls.append(1) or forward(*a))
    x = _unit(500, torch.float64, seed=9).requires_grad_(True)
    y = spherical_harmonics(8, x)
    assert calls == []  # the C kernel served it
    (g,) = torch.autograd.grad((y * y.detach()).sum(), x)
    monkeypatch.setenv("GEODL_DISABLE_CPU_KERNEL", "1")
    assert csh.sh_real_cpu(x, 8, sh._empty_output) is None
    assert csh.kernel_info() == {"disabled": True}
    y2 = spherical_harmonics(8, x)
    assert calls == [1]  # the torch forward
    torch.testing.assert_close(y2, y, **_TOL[torch.float64])
    (g2,) = torch.autograd.grad((y2 * y2.detach()).sum(), x)
    torch.testing.assert_close(g2, g, rtol=1e-12, atol=1e-12)  # the torch backward vs its C twin
    monkeypatch.setenv("GEODL_DISABLE_CPU_KERNEL", "0")
    assert csh.sh_real_cpu(x, 8, sh._empty_output) is not None


def test_other_dtypes_and_devices_are_not_served():
    assert csh.sh_real_cpu(torch.zeros(4, 3, dtype=torch.float16), 2, sh._empty_output) is None
    assert csh.sh_real_cpu(torch.zeros(4, 3, device="meta"), 2, sh._empty_output) is None


def test_no_compiler_falls_back_to_torch(monkeypatch, fresh_state):
    monkeypatch.setattr(csh, "_compiler", lambda: None)
    x = _unit(300, torch.float32)
    assert csh.sh_real_cpu(x, 5, sh._empty_output) is None
    assert "no C compiler" in csh.kernel_info()["error"]
    calls = []
    forward = sh._sh_real_forward
    monkeypatch.setattr(sh, "_sh_real_forward", lambda *a: calls.append(1) or forward(*a))
    assert torch.equal(sh._sh_real_ref(x, 5), forward(x, 5))  # the op's CPU implementation
    assert calls == [1]


def test_failing_compiler_falls_back_to_torch(monkeypatch, tmp_path, fresh_state):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("GEODL_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(csh.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    x = _unit(300, torch.float32)
    assert csh.sh_real_cpu(x, 5, sh._empty_output) is None
    assert "broken" in csh.kernel_info()["error"]
    assert not list((tmp_path / "cache").glob("*.so*"))  # no half-written library left behind


@needs_kernel
def test_cache_folder_build_once_reuse_and_repair(monkeypatch, tmp_path, fresh_state):
    cache = tmp_path / "kernels"
    monkeypatch.setenv("GEODL_KERNEL_CACHE", str(cache))
    assert csh.cache_dir() == cache
    info = csh.kernel_info()
    assert "path" in info, info
    (lib,) = cache.glob("sh_cpu-*.so")
    assert Path(info["path"]) == lib and "-pthread" in info["flags"]
    assert [p.name for p in cache.iterdir()] == [lib.name]  # no temporary files left

    # a fresh process state loads the cached file without compiling
    csh._state.clear()
    runs = []
    real_run = subprocess.run
    monkeypatch.setattr(csh.subprocess, "run", lambda cmd, **kw: runs.append(cmd) or real_run(cmd, **kw))
    x = _unit(400, torch.float64)
    torch.testing.assert_close(_kernel(x, 7), sh._sh_real_forward(x, 7), **_TOL[torch.float64])
    assert not [c for c in runs if "-shared" in c]

    # a damaged file is rebuilt (in another folder: a library this process has loaded is never
    # overwritten, only replaced by a rename, and dlopen would hand back the loaded copy)
    other = tmp_path / "other"
    cc = csh._compiler()
    damaged = csh._build(cc, csh._CFLAGS, other)
    assert damaged.name == lib.name
    damaged.write_bytes(b"not a shared library")
    monkeypatch.setenv("GEODL_KERNEL_CACHE", str(other))
    csh._state.clear()
    runs.clear()
    torch.testing.assert_close(_kernel(x, 7), sh._sh_real_forward(x, 7), **_TOL[torch.float64])
    assert [c for c in runs if "-shared" in c] and damaged.stat().st_size > 1000

    # the key covers source, compiler and flags
    assert csh._key(cc, csh._CFLAGS) != csh._key(cc, csh._CFLAGS + ("-DSH_BLOCK=128",))
    assert lib.name == f"sh_cpu-{csh._key(cc, csh._CFLAGS)}.so"


@needs_kernel
def test_unwritable_cache_folder_uses_the_temp_folder(monkeypatch, tmp_path, fresh_state):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("GEODL_KERNEL_CACHE", str(blocker / "kernels"))  # below a file: mkdir fails
    monkeypatch.setattr(csh.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    info = csh.kernel_info()
    assert "path" in info, info
    assert Path(info["path"]).parent.parent == tmp_path / "tmp"


@needs_kernel
def test_processes_building_at_once(tmp_path):
    cache = tmp_path / "kernels"
    code = ("import torch, geodl.ops._sh_cpu as c, geodl.ops._sh as s\n"
            "x = torch.nn.functional.normalize(torch.randn(300, 3, dtype=torch.float64), dim=1)\n"
            "y = c.sh_real_cpu(x, 6, s._empty_output)\n"
            "assert y is not None, c.kernel_info()\n"
            "assert torch.allclose(y, s._sh_real_forward(x, 6), rtol=1e-13, atol=1e-14)\n")
    env = dict(os.environ, GEODL_KERNEL_CACHE=str(cache), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert len(list(cache.glob("sh_cpu-*.so"))) == 1
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]


@needs_kernel
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_runs_the_kernel_on_threads():
    # the pool's threads are not inherited by fork(): the child starts its own
    x = _unit(30000, torch.float32, seed=12)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ref = _kernel(x, 6)  # the parent's pool is running
        pid = os.fork()
        if pid == 0:  # child: same values on two threads, then leave without cleanup
            y = _kernel(x, 6)
            # torch's own parallel ops (libgomp) can hang in a forked child of a process that ran
            # OpenMP regions: compare on one thread
            torch.set_num_threads(1)
            ok = torch.equal(y, ref)
            os._exit(0 if ok else 1)
        deadline = time.monotonic() + 120
        while True:  # never wait forever on a child that hangs
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        torch.set_num_threads(old)


@needs_kernel
def test_under_torch_compile():
    torch._dynamo.reset()
    x = _unit(600, torch.float64, seed=11).requires_grad_(True)

    def f(p):
        return spherical_harmonics(6, p).square().sum(1)

    eager = f(x)
    (g,) = torch.autograd.grad(eager.sum(), x)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    (gc,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, eager, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gc, g, rtol=1e-10, atol=1e-12)


# ---- the C backward (the twin of _sh_real_backward_analytic) and the C directions prologue

_BWD_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def _grad_layouts(n, k, dtype, seed):
    g = torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    return {"row-major": g.contiguous(), "column-major": g.t().contiguous().t()}


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("lmax", [0, 1, 2, 3, 10, 20, 40])
def test_backward_same_values_as_the_torch_backward(lmax, dtype):
    x = _unit(1037, dtype, seed=20 + lmax)  # 1042 points: not a multiple of the 64-point block
    for layout, g in _grad_layouts(1042, (lmax + 1) ** 2, dtype, lmax).items():
        got = csh.sh_backward_cpu(x, g, lmax)
        assert got is not None, csh.kernel_info()
        ref = sh._sh_real_backward_analytic(x, g, lmax)
        assert got.shape == (1042, 3) and got.dtype == dtype and got.is_contiguous(), layout
        scale = float(ref.abs().max()) if lmax else 1.0
        assert float((got - ref).abs().max()) <= _BWD_TOL[dtype] * scale, (layout, float((got - ref).abs().max()))
        if lmax == 0:
            assert torch.equal(got, torch.zeros_like(got))


@needs_kernel
def test_backward_strided_inputs_empty_and_dtype_cast():
    x = _unit(595, torch.float64, seed=31)
    g = _grad_layouts(600, 49, torch.float64, 3)["column-major"]
    ref = sh._sh_real_backward_analytic(x, g, 6)
    wide = torch.cat([x, torch.ones(600, 2, dtype=torch.float64)], 1)[:, :3]  # row stride 5
    both = torch.stack([g, g], 2)[..., 0]  # strides (98, 2): neither is 1, copied
    assert both.stride() == (98, 2)
    for xv, gv in ((wide, g), (x.t().contiguous().t(), g), (x, both), (x, g.float())):
        torch.testing.assert_close(csh.sh_backward_cpu(xv, gv, 6), ref, rtol=1e-5 if gv.dtype == torch.float32 else 1e-12,
                                   atol=1e-6 if gv.dtype == torch.float32 else 1e-13)
    empty = csh.sh_backward_cpu(torch.zeros(0, 3), torch.zeros(0, 16), 3)
    assert empty.shape == (0, 3)
    assert csh.sh_backward_cpu(torch.zeros(4, 3, dtype=torch.float16), torch.zeros(4, 4, dtype=torch.float16), 1) is None


@needs_kernel
def test_backward_threads_give_the_same_values():
    x = _unit(20000, torch.float32, seed=32)
    g = _grad_layouts(20005, 121, torch.float32, 4)["column-major"]
    old = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(csh.sh_backward_cpu(x, g, 10))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


@needs_kernel
def test_public_gradcheck_float64():
    x = (_unit(7, torch.float64, seed=34) * torch.tensor([0.5, 2.0, 1.0, 3.0, 1.0, 1.0, 0.7, 1.5, 1.0, 2.5,
                                                         1.0, 1.0], dtype=torch.float64)[:, None]).requires_grad_(True)
    for kw in ({}, {"allow_zero_vectors": True}, {"convention": "e3nn"}, {"normalize": False}):
        assert torch.autograd.gradcheck(lambda p: spherical_harmonics(4, p, **kw), (x,))
    assert torch.autograd.gradgradcheck(lambda p: spherical_harmonics(3, p), (x,))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_directions_bit_equal_to_the_torch_path(dtype):
    g = torch.Generator().manual_seed(35)
    n = 20000
    mags = torch.logspace(-40 if dtype == torch.float32 else -310, 37 if dtype == torch.float32 else 307, n,
                          dtype=torch.float64)
    x = (torch.randn(n, 3, generator=g, dtype=torch.float64) * mags[:, None]).to(dtype)
    x[5] = 0.0
    x[6, 1:] = 0.0
    x[7] = torch.finfo(dtype).max
    x[8] = -torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # subnormal
    u, zero, nzero, nbad = csh.unit_directions_cpu(x)
    ref, zref = sh._directions(x, True, True)
    assert torch.equal(u, ref) and torch.equal(zero, zref) and zero.shape == (n, 1)
    assert (nzero, nbad) == (int((x == 0).all(1).sum()), 0)
    col = x.t().contiguous().t()  # any strides
    assert torch.equal(csh.unit_directions_cpu(col)[0], ref)
    for bad in (float("nan"), float("inf"), -float("inf")):
        y = x.clone()
        y[3, 2] = bad
        y[9, 0] = bad
        assert csh.unit_directions_cpu(y)[3] == 2
    assert csh.unit_directions_cpu(torch.zeros(0, 3, dtype=dtype))[2:] == (0, 0)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_directions_gradient_matches_autograd_of_the_torch_path(dtype):
    x = (torch.randn(3000, 3, generator=torch.Generator().manual_seed(36), dtype=torch.float64)
         * torch.logspace(-20, 20, 3000, dtype=torch.float64)[:, None]).to(dtype)
    x[10] = 0.0
    x.requires_grad_(True)
    w = torch.randn(3000, 3, generator=torch.Generator().manual_seed(37), dtype=torch.float64).to(dtype)
    u, zero, nzero, nbad = csh.unit_directions_cpu(x)
    assert u.requires_grad and not zero.requires_grad and (nzero, nbad) == (1, 0)
    (g,) = torch.autograd.grad((u * w).sum(), x)
    ref, _ = sh._directions(x, True, True)
    (gr,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.equal(g, gr)  # autograd's own operations on the torch composition, in C
    assert torch.equal(g[10], torch.zeros(3, dtype=dtype))  # the placeholder is a constant
    # double backward differentiates the torch composition
    y = torch.randn(6, 3, generator=torch.Generator().manual_seed(39), dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradgradcheck(lambda p: csh.unit_directions_cpu(p)[0], (y,))


@needs_kernel
def test_public_backward_runs_the_kernel_and_falls_back(monkeypatch):
    calls = []
    analytic = sh._sh_real_backward_analytic
    monkeypatch.setattr(sh, "_sh_real_backward_analytic", lambda *a: calls.append(1) or analytic(*a))
    for dtype in (torch.float32, torch.float64):
        x = (_unit(700, dtype, seed=33) * 3.0).requires_grad_(True)
        w = torch.randn(705, 144, generator=torch.Generator().manual_seed(5), dtype=dtype)
        (g,) = torch.autograd.grad((spherical_harmonics(11, x) * w).sum(), x)
        assert calls == []  # the C backward served it
        monkeypatch.setenv("GEODL_DISABLE_CPU_KERNEL", "1")
        (g2,) = torch.autograd.grad((spherical_harmonics(11, x) * w).sum(), x)
        monkeypatch.delenv("GEODL_DISABLE_CPU_KERNEL")
        assert calls == [1]  # the torch backward
        calls.clear()
        torch.testing.assert_close(g, g2, rtol=1e-4 if dtype == torch.float32 else 1e-11,
                                   atol=1e-5 if dtype == torch.float32 else 1e-12)


@needs_kernel
def test_public_prologue_runs_in_c_and_keeps_the_errors(monkeypatch):
    calls = []
    directions = sh._directions
    monkeypatch.setattr(sh, "_directions", lambda *a: calls.append(1) or directions(*a))
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(38)) * 1e20
    y = spherical_harmonics(6, x)
    assert calls == []
    monkeypatch.setenv("GEODL_DISABLE_CPU_KERNEL", "1")
    assert torch.equal(spherical_harmonics(6, x), y)
    assert calls == [1]
    monkeypatch.delenv("GEODL_DISABLE_CPU_KERNEL")
    for bad, word in ((float("nan"), "NaN"), (float("inf"), "inf")):
        z = x.clone()
        z[4, 1] = bad
        with pytest.raises(ValueError, match=f"points: contains {word} values"):
            spherical_harmonics(3, z)
    z = x.clone()
    z[2] = 0.0
    with pytest.raises(ValueError, match="contains zero vectors"):
        spherical_harmonics(3, z)
    y = spherical_harmonics(3, z, allow_zero_vectors=True)
    monkeypatch.setenv("GEODL_DISABLE_CPU_KERNEL", "1")
    assert torch.equal(spherical_harmonics(3, z, allow_zero_vectors=True), y)
