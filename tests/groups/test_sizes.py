"""Sizes of geodl.groups checked before allocating; the bounded Wigner-D table cache; float32
Wigner-D at high degree; empty batches.

Requests that would allocate without bound on a broken implementation run with this process's
address space limited for their duration; the others shrink the memory the checks see
(``geodl._checks._available_bytes``) so that small requests trip them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict

import pytest
import torch

from geodl import _checks
from geodl.groups import (
    get_group,
    nearest_rotation,
    random_rotation,
    s2_healpix_grid,
    s2_healpix_lonlat,
    so3_healpix_grid,
    wigner_D,
    wigner_D_blocks,
)
from geodl.groups import _grids, _wigner

F64 = torch.float64
_HEADROOM = 3 << 30  # address space the cases may add: far below the requests tested


@contextlib.contextmanager
def _limited_address_space():
    """Lower this process's address-space limit to its current size plus ``_HEADROOM`` (restored on
    exit): on a broken implementation an unbounded allocation fails fast instead of swapping."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    limit = size + _HEADROOM if hard == resource.RLIM_INFINITY else min(size + _HEADROOM, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


_BIG = {  # name -> (call, argument the error names)
    "so3_grid_rec8": (lambda: so3_healpix_grid(8), "rec"),  # ~87 GB of float64 rotations
    "so3_grid_rec7": (lambda: so3_healpix_grid(7, dtype=torch.float32), "rec"),
    "s2_lonlat_nside": (lambda: s2_healpix_lonlat(2**13), "nside"),
    "wigner_batch": (lambda: wigner_D(50, torch.eye(3, dtype=torch.float64).expand(10**7, 3, 3)), "l"),
    "wigner_blocks_batch": (lambda: wigner_D_blocks(40, torch.eye(3).expand(10**7, 3, 3)), "lmax"),
    "wigner_huge_l": (lambda: wigner_D(10**7, torch.eye(3, dtype=torch.float64)), "l"),  # tables alone: 1.6e16 bytes
    "sample_n_nodes": (lambda: get_group("SO3+perm").sample(n_nodes=10**12), "n_nodes"),
    "structured_n_nodes": (lambda: get_group("E3+perm").structured(n_nodes=10**12), "n_nodes"),
    "sample_parts": (lambda: get_group("SE3^parts").sample(labels=torch.tensor([0, 10**10])), "labels"),
}


def test_oversize_requests_raise_before_allocating():
    got = {}
    with _limited_address_space(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the accuracy warning of l > 100 (a broken check)
        for name, (call, _) in _BIG.items():
            try:
                call()
                got[name] = "ok"
            except Exception as e:  # noqa: BLE001 - the message is what is checked
                got[name] = f"{type(e).__name__}: {e}"
    for name, (_, arg) in _BIG.items():
        assert got[name].startswith(f"ValueError: {arg}:"), (name, got[name])
        assert "GiB of memory" in got[name] and "available" in got[name], (name, got[name])


@pytest.fixture
def tiny_memory(monkeypatch):
    """Every request is looked at, and only 100 kB are available."""
    monkeypatch.setattr(_checks, "_CHECKED_BYTES", 0)
    monkeypatch.setattr(_checks, "_available_bytes", lambda device: 100_000)


def test_limits_follow_available_memory(tiny_memory):
    R = torch.eye(3, dtype=F64).expand(100, 3, 3)
    with pytest.raises(ValueError, match=r"^l: 10 asks for the Wigner-D matrix of degree 10 for 100 rotations"):
        wigner_D(10, R)
    with pytest.raises(ValueError, match=r"^lmax: 10 asks for the Wigner-D blocks of degrees 0\.\.10"):
        wigner_D_blocks(10, R)
    with pytest.raises(ValueError, match=r"^rec: 1 .*GiB of memory"):
        so3_healpix_grid(1)
    with pytest.raises(ValueError, match=r"^rec: 4 "):
        s2_healpix_grid(4)
    with pytest.raises(ValueError, match=r"^nside: 64 "):
        s2_healpix_lonlat(64)
    grid = torch.eye(3, dtype=F64).expand(1000, 3, 3)
    with pytest.raises(ValueError, match=r"^chunk_size: 100 "):
        nearest_rotation(R, grid, chunk_size=100)
    with pytest.raises(ValueError, match=r"^n_nodes: 10000 "):
        get_group("SO3+perm").sample(n_nodes=10_000)
    with pytest.raises(ValueError, match=r"^labels: \(largest part id 99\) asks for 100 per-part group elements"):
        get_group("SO3^parts").sample(labels=torch.tensor([0, 99]))
    # small requests still fit
    assert wigner_D(2, R[:2]).shape == (2, 5, 5)
    assert so3_healpix_grid(0).shape == (72, 3, 3)
    assert get_group("SO3+perm").sample(n_nodes=5).perm.shape == (5,)


def test_recursion_table_cache_is_bounded(monkeypatch):
    budget = 200_000
    monkeypatch.setattr(_wigner, "_TABLE_CACHE_BYTES", budget)
    monkeypatch.setattr(_wigner, "_tables", OrderedDict())
    monkeypatch.setattr(_wigner, "_tables_bytes", 0)
    R = random_rotation(3, generator=torch.Generator().manual_seed(0), dtype=F64)
    ref = [wigner_D(l, R) for l in (5, 20, 35)]
    assert _wigner._table_cache_bytes() <= budget
    total = sum(_wigner._table_nbytes(l) for l in range(2, 36))
    assert total > 4 * budget  # without the bound the cache would hold all of them
    largest_kept = max(l for l in range(2, 36) if _wigner._table_nbytes(l) <= budget // 4)
    assert len(_wigner._tables) < 34 and max(_wigner._tables) == largest_kept  # the most recent are kept
    assert _wigner._table_cache_bytes() == sum(_wigner._table_nbytes(l) for l in _wigner._tables)
    # the same numbers whether the tables come from the cache or are rebuilt
    again = [wigner_D(l, R) for l in (5, 20, 35)]
    for a, b in zip(ref, again):
        assert torch.equal(a, b)
    # a table larger than a quarter of the budget is never kept
    big = next(l for l in range(2, 100) if _wigner._table_nbytes(l) > budget // 4)
    wigner_D(big + 1, R)
    assert big + 1 not in _wigner._tables and _wigner._table_cache_bytes() <= budget


def test_recursion_table_cache_stays_bounded_at_default_budget():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # l > 100: the accuracy warning
        wigner_D(150, torch.eye(3, dtype=F64))
    total = sum(_wigner._table_nbytes(l) for l in range(2, 151))
    assert total > 2 * _wigner._TABLE_CACHE_BYTES  # ~180 MB of tables were built
    assert _wigner._table_cache_bytes() <= _wigner._TABLE_CACHE_BYTES == 64 << 20


def _orth_error(D: torch.Tensor) -> float:
    D = D.double()
    n = D.shape[-1]
    return float((D @ D.transpose(-1, -2) - torch.eye(n, dtype=F64)).abs().max())


def test_float32_high_degree_is_upcast():
    R64 = random_rotation(20, generator=torch.Generator().manual_seed(1), dtype=F64)
    R32 = R64.float()
    for l in (40, 60):
        D = wigner_D(l, R32)
        assert D.dtype == torch.float32 and D.shape == (20, 2 * l + 1, 2 * l + 1)
        # the float32 recursion reaches 1e-4 at l = 40 and 6e-3 at l = 60; float64 rounded stays ~1e-6
        assert _orth_error(D) < 2e-5, l
        assert float((D.double() - wigner_D(l, R64)).abs().max()) < 1e-5, l
        assert torch.equal(D, wigner_D(l, R32.double()).float())
    blocks = wigner_D_blocks(40, R32)
    assert all(b.dtype == torch.float32 for b in blocks)
    assert torch.equal(blocks[40], wigner_D(40, R32))


def test_float32_low_degree_unchanged():
    """Up to l = 28 the recursion runs in the input dtype (the numbers of before)."""
    R32 = random_rotation(5, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    D = wigner_D(_wigner._NATIVE_LMAX, R32)
    native = _wigner._blocks(_wigner._NATIVE_LMAX, R32, torch.float32, keep_all=False)[0]
    assert torch.equal(D, native)
    assert not torch.equal(D, wigner_D(_wigner._NATIVE_LMAX, R32.double()).float())


def test_float32_upcast_keeps_gradients():
    R = random_rotation(2, generator=torch.Generator().manual_seed(3), dtype=torch.float32).requires_grad_()
    wigner_D(35, R).sum().backward()
    assert R.grad.dtype == torch.float32 and bool(torch.isfinite(R.grad).all())


def test_beyond_the_accurate_range_warns():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wigner_D(100, torch.eye(3, dtype=F64))
    with pytest.warns(RuntimeWarning, match=r"^l: degree 101 is beyond the accurate range"):
        wigner_D(101, torch.eye(3, dtype=F64))
    with pytest.warns(RuntimeWarning, match=r"^lmax: degree 101"):
        wigner_D_blocks(101, torch.eye(3, dtype=F64))


def test_empty_batch_of_rotations():
    R = torch.empty(0, 3, 3, dtype=F64, requires_grad=True)
    D = wigner_D(4, R)
    assert D.shape == (0, 9, 9) and D.dtype == F64
    D.sum().backward()
    assert R.grad.shape == (0, 3, 3)
    assert [tuple(b.shape) for b in wigner_D_blocks(2, torch.empty(2, 0, 3, 3))] == [(2, 0, 1, 1), (2, 0, 3, 3), (2, 0, 5, 5)]
    assert wigner_D(40, torch.empty(0, 3, 3)).shape == (0, 81, 81)
    assert nearest_rotation(torch.empty(0, 3, 3), so3_healpix_grid(0)).shape == (0,)


def test_large_so3_grids_are_not_cached(monkeypatch):
    monkeypatch.setattr(_grids, "_SO3_CACHED_REC", 1)
    _grids._so3_grid64_cached.cache_clear()
    a = so3_healpix_grid(2, dtype=F64)
    assert _grids._so3_grid64_cached.cache_info().currsize == 0
    so3_healpix_grid(1, dtype=F64)
    assert _grids._so3_grid64_cached.cache_info().currsize == 1
    monkeypatch.setattr(_grids, "_SO3_CACHED_REC", 5)
    assert torch.equal(a, so3_healpix_grid(2, dtype=F64))  # the same grid from the cache


def test_nested_nside_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="nside: the nested order needs a power of two"):
        s2_healpix_lonlat(6, nest=True)
    assert s2_healpix_lonlat(6).shape == (432, 2)  # RING order takes any nside


@pytest.mark.parametrize("call", [
    lambda: random_rotation(2, dtype="float32"),
    lambda: random_rotation(dtype="torch.float32"),
    lambda: so3_healpix_grid(0, dtype="float32"),
])
def test_string_dtype_gets_the_torch_dtype_hint(call):
    with pytest.raises(TypeError, match=r"^dtype: .*the string '(torch\.)?float32'; pass torch\.float32 instead"):
        call()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float64"])
def test_finite_group_refuses_non_floating_dtypes(dtype):
    from geodl.groups import finite_group

    with pytest.raises(TypeError, match="^dtype: expected a floating-point torch.dtype"):
        finite_group("tetrahedral", dtype)
    assert finite_group("tetrahedral", None).dtype == F64  # None keeps the float64 default
