"""knn_graph, radius_graph, farthest_point_sampling against dense brute force (ties by index);
tests taking ``backend`` run once per back end (``conftest.py``)."""

import math

import pytest
import torch
from _triton_interp import run_on_saved  # tests/ops helper (pytest puts this folder on sys.path)

from geodl.ops import farthest_point_sampling, knn_graph, radius_graph


def _dense_sqdist(pos):
    D = torch.zeros(pos.shape[0], pos.shape[0], dtype=pos.dtype)
    for j in range(pos.shape[1]):  # same accumulation order as documented: sum_j (x_j - y_j)^2
        t = pos[:, None, j] - pos[None, :, j]
        D = t * t if j == 0 else D + t * t
    return D


def _brute(pos, batch, loop, k=None, r=None):
    """Dense reference: per query, candidates of its graph sorted by (distance, index)."""
    D = _dense_sqdist(pos)
    src, dst = [], []
    for i in range(pos.shape[0]):
        ok = batch == batch[i]
        if not loop:
            ok[i] = False
        if r is not None:
            ok &= D[i] <= r * r
        cand = ok.nonzero().flatten()
        cand = cand[torch.sort(D[i, cand], stable=True).indices]  # cand ascending, stable: ties by index
        if k is not None:
            cand = cand[:k]
        src += cand.tolist()
        dst += [i] * len(cand)
    return torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)


def _cloud(seed, grid=False):
    """Five graphs of sizes 1, 2, 5, 9, 30 with an unsorted batch vector; grid points give many ties."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(5), torch.tensor([1, 2, 5, 9, 30]))
    batch = batch[torch.randperm(batch.numel(), generator=gen)]
    if grid:
        pos = torch.randint(0, 3, (batch.numel(), 3), generator=gen).to(torch.float64)
    else:
        pos = torch.randn(batch.numel(), 3, generator=gen)
    return pos, batch


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("loop", [False, True])
@pytest.mark.parametrize("k", [1, 4, 40])
def test_knn_matches_brute_force(grid, loop, k):
    pos, batch = _cloud(0, grid)
    ref = _brute(pos, batch, loop, k=k)
    assert torch.equal(knn_graph(pos, k, batch, loop), ref)
    assert torch.equal(knn_graph(pos, k, batch, loop, chunk_size=7), ref)  # many small blocks
    if k == 40:  # k larger than every graph: all other points of the graph
        deg = torch.bincount(ref[1], minlength=pos.shape[0])
        sizes = torch.bincount(batch)[batch]
        assert torch.equal(deg, sizes - (0 if loop else 1))


def test_knn_single_graph_sorted_and_2d(backend):
    gen = torch.Generator().manual_seed(1)
    pos = torch.randn(60, 2, generator=gen)
    ref = _brute(pos, torch.zeros(60, dtype=torch.long), False, k=5)
    assert torch.equal(knn_graph(pos, 5), ref)
    assert torch.equal(knn_graph(pos, 5, torch.zeros(60, dtype=torch.long), chunk_size=100), ref)
    assert knn_graph(pos[:0], 3).shape == (2, 0)


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("loop", [False, True])
def test_radius_matches_brute_force(grid, loop, backend):
    pos, batch = _cloud(2, grid)
    r = 1.0 if grid else 0.8  # grid: distance exactly 1 lies on the sphere (<= r)
    ref = _brute(pos, batch, loop, r=r)
    assert ref.shape[1] > 0
    assert torch.equal(radius_graph(pos, r, batch, loop), ref)
    assert torch.equal(radius_graph(pos, r, batch, loop, chunk_size=5), ref)
    capped = _brute(pos, batch, loop, k=3, r=r)
    assert torch.equal(radius_graph(pos, r, batch, loop, max_num_neighbors=3), capped)


def test_radius_tiny_is_empty():
    pos, batch = _cloud(3)
    e = radius_graph(pos, 1e-9, batch)
    assert e.shape == (2, 0) and e.dtype == torch.long
    e = radius_graph(pos, 1e-9, batch, loop=True)  # only self-loops survive
    assert torch.equal(e, torch.arange(pos.shape[0]).repeat(2, 1))


def _fps_reference(pos, batch, counts, start=None):
    out = []
    for g in range(int(batch.max()) + 1):
        idx = (batch == g).nonzero().flatten()
        if idx.numel() == 0:
            continue
        x = pos[idx]
        chosen = [0 if start is None else int((idx == start[g]).nonzero())]
        mind = torch.full((len(idx),), math.inf, dtype=pos.dtype)
        for _ in range(counts[g] - 1):
            t = None
            for j in range(pos.shape[1]):
                u = x[:, j] - x[chosen[-1], j]
                t = u * u if t is None else t + u * u
            mind = torch.minimum(mind, t)
            mind[chosen] = -math.inf
            chosen.append(int(torch.argmax(mind)))  # first maximal value: ties by index
        out += idx[chosen].tolist()
    return torch.tensor(out, dtype=torch.long)


@pytest.mark.parametrize("grid", [False, True])
def test_fps_matches_reference(grid, backend):
    pos, batch = _cloud(4, grid)
    sizes = torch.bincount(batch).tolist()
    ref = _fps_reference(pos, batch, [math.ceil(0.5 * n) for n in sizes])
    assert torch.equal(farthest_point_sampling(pos, 0.5, batch), ref)
    ref = _fps_reference(pos, batch, [min(4, n) for n in sizes])
    assert torch.equal(farthest_point_sampling(pos, batch=batch, num=4), ref)
    full = farthest_point_sampling(pos, 1.0, batch)
    assert torch.equal(torch.sort(full).values, torch.arange(pos.shape[0]))


def test_fps_random_start_reproducible():
    pos, batch = _cloud(5)
    a = farthest_point_sampling(pos, 0.3, batch, random_start=True, generator=torch.Generator().manual_seed(3))
    b = farthest_point_sampling(pos, 0.3, batch, random_start=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    sizes = torch.bincount(batch).tolist()
    firsts = []
    for g, n in enumerate(sizes):
        firsts.append(a[sum(math.ceil(0.3 * m) for m in sizes[:g])])
        assert batch[firsts[-1]] == g
    ref = _fps_reference(pos, batch, [math.ceil(0.3 * n) for n in sizes], start=firsts)
    assert torch.equal(a, ref)


def test_bad_input():
    pos, batch = _cloud(6)
    with pytest.raises(ValueError, match="k"):
        knn_graph(pos, 0)
    with pytest.raises(ValueError, match="r"):
        radius_graph(pos, -1.0)
    with pytest.raises(ValueError, match="pos"):
        knn_graph(pos.clone().fill_(float("nan")), 2)
    with pytest.raises(ValueError, match="pos"):
        knn_graph(pos[0], 2)
    with pytest.raises(ValueError, match="batch"):
        knn_graph(pos, 2, batch[:-1])
    with pytest.raises(TypeError, match="batch"):
        knn_graph(pos, 2, batch.float())
    with pytest.raises(ValueError, match="batch"):
        radius_graph(pos, 1.0, batch - 1)
    with pytest.raises(ValueError, match="ratio"):
        farthest_point_sampling(pos, 0.5, num=3)
    with pytest.raises(ValueError, match="ratio"):
        farthest_point_sampling(pos, 1.5)
    with pytest.raises(ValueError, match="chunk_size"):
        knn_graph(pos, 2, chunk_size=0)


def _near_ties(seed, n_graphs=2, n=300, scale=1.0, dtype=torch.float32):
    """Jittered grid points: many distances closer than the rounding of ||x||^2 + ||y||^2 - 2 x.y."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 6, (n_graphs * n, 3), generator=gen).to(torch.float64)
    jitter = 1e-4 if dtype == torch.float32 else 1e-12
    pos = (grid + jitter * torch.randn(grid.shape, generator=gen, dtype=torch.float64)).to(dtype) * scale
    return pos, torch.arange(n_graphs).repeat_interleave(n)


@pytest.mark.parametrize("scale,dtype", [(1.0, torch.float32), (1e15, torch.float32), (1e-15, torch.float32),
                                         (1.0, torch.float64), (1e150, torch.float64)])
def test_screening_is_exact_on_near_ties(scale, dtype):
    """The matrix-multiply screening (groups of up to 16 slots) never drops or reorders a neighbour."""
    pos, batch = _near_ties(7, scale=scale, dtype=dtype)
    for k in (1, 16):
        assert torch.equal(knn_graph(pos, k, batch), _brute(pos, batch, False, k=k))
    r = 1.0 * scale  # grid distance 1, jittered: pairs on both sides of the sphere
    ref = _brute(pos, batch, False, r=r)
    assert torch.equal(radius_graph(pos, r, batch), ref)
    assert torch.equal(radius_graph(pos, r, batch, max_num_neighbors=5), _brute(pos, batch, False, k=5, r=r))


def test_bfloat16_and_duplicates():
    pos, batch = _cloud(8, grid=True)  # grid: duplicated points (distance 0) and many ties
    pos = pos.to(torch.bfloat16)
    assert torch.equal(knn_graph(pos, 6, batch), _brute(pos, batch, False, k=6))
    assert torch.equal(radius_graph(pos, 1.5, batch, loop=True), _brute(pos, batch, True, r=1.5))


def test_compile_fullgraph():
    def f(pos, batch):
        return knn_graph(pos, 3, batch), radius_graph(pos, 0.8, batch), radius_graph(pos, 0.8, batch, max_num_neighbors=2)

    pos, batch = _cloud(9)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(pos, batch), f(pos, batch)):
        assert torch.equal(got, want)


def _interpreted(tmp_path, call, cases):
    """``geodl.ops._neighbors.<call>(*case)`` for each case, run by Triton's interpreter in a fresh
    process (TRITON_INTERPRET must be set before triton is imported)."""
    pytest.importorskip("triton")
    script = ("import sys, torch\n"
              f"from geodl.ops._neighbors import {call} as f\n"
              "torch.save([f(*c) for c in torch.load(sys.argv[1])], sys.argv[2])\n")
    return run_on_saved(script, cases, tmp_path)


def test_triton_knn_interpreted(tmp_path):
    cases = []  # k = 9 exceeds four of the five graph sizes; the grid gives ties and duplicates
    for seed, grid, k, loop, r2 in ((0, False, 9, False, None), (1, True, 3, True, 1.0)):
        pos, batch = _cloud(seed, grid)
        cases.append((pos.float(), batch, k, loop, r2))
    outs = _interpreted(tmp_path, "_knn_triton_edges", cases)
    for (pos, batch, k, loop, r2), got in zip(cases, outs):
        r = None if r2 is None else math.sqrt(r2)
        assert torch.equal(got, _brute(pos, batch, loop, k=k, r=r)), (k, loop, r2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_knn_cuda():
    pos, batch = _near_ties(7)
    for k in (1, 16, 64):
        assert torch.equal(knn_graph(pos.cuda(), k, batch.cuda()).cpu(), _brute(pos, batch, False, k=k))


# The Triton radius kernel through the interpreter, against the plain-torch path and brute force:
# several graphs with an unsorted batch, grid ties and duplicates, loop on and off, float32/float64,
# r^2 that rounds up onto the grid distance 1 in float32, graphs wider than one candidate tile (64),
# and an empty result.
def test_triton_radius_interpreted(tmp_path):
    from geodl.ops._neighbors import _edges, _radius_block

    cases = []
    for seed, grid, dtype, r, loop in ((2, False, torch.float32, 0.8, False),
                                       (2, True, torch.float64, 1.0, True),
                                       (1, True, torch.float32, math.sqrt(1 - 1e-9), False),
                                       (3, False, torch.float32, 1e-9, False)):
        pos, batch = _cloud(seed, grid)
        cases.append((pos.to(dtype), batch, r * r, loop))
    pos, batch = _near_ties(7, n=100)
    cases.append((pos, batch.flip(0), 1.0, True))
    outs = _interpreted(tmp_path, "_radius_triton_edges", cases)
    for (pos, batch, r2, loop), got in zip(cases, outs):
        want = _edges(pos, batch, 1 << 22, _radius_block, r2, loop)
        assert torch.equal(got, want), (pos.dtype, r2, loop)
        assert torch.equal(got, _brute(pos, batch, loop, r=math.sqrt(r2))), (pos.dtype, r2, loop)
    assert outs[3].shape == (2, 0) and outs[4].shape[1] > 100
    pos, (src, dst) = cases[2][0], outs[2]  # r^2 < 1, but rounded to float32 it is 1: the sphere counts
    assert bool((((pos[src] - pos[dst]) ** 2).sum(1) == 1).any())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_radius_cuda():
    """radius_graph on CUDA (the Triton kernel) equals the CPU torch path, also with max_num_neighbors."""
    pos, batch = _near_ties(7)
    perm = torch.randperm(batch.numel(), generator=torch.Generator().manual_seed(0))
    pos, batch = pos[perm], batch[perm]  # unsorted batch
    for dtype in (torch.float32, torch.float64):
        p = pos.to(dtype)
        for loop in (False, True):
            for cap in (None, 5):
                want = radius_graph(p, 1.0, batch, loop, max_num_neighbors=cap)
                got = radius_graph(p.cuda(), 1.0, batch.cuda(), loop, max_num_neighbors=cap)
                assert torch.equal(got.cpu(), want), (dtype, loop, cap)
    assert radius_graph(pos.cuda(), 1e-9, batch.cuda()).shape == (2, 0)


def test_fps_compile_fullgraph():
    """The custom op traces: a dynamic sample count with ``batch``, a static one without."""
    def f(pos, batch):
        a = farthest_point_sampling(pos, 0.5, batch)
        b = farthest_point_sampling(pos, num=7)
        return a, b, pos[a].sum(0) + pos[b].sum(0)

    pos, batch = _cloud(10)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(pos, batch), f(pos, batch)):
        assert torch.equal(got, want)


# The Triton FPS kernel through the interpreter, both its one-tile path and (tile=16, so the 30-point
# graph spans two tiles) its tiled path, against the plain-torch path of the same function.
def test_triton_fps_interpreted(tmp_path):
    from geodl.ops._neighbors import _fps_index

    cases = []  # grid: ties and duplicates; u: random starts
    for seed, grid, dtype, ratio, num, rand, tile in ((0, True, torch.float32, 0.5, None, False, None),
                                                      (1, True, torch.float32, None, 20, True, 16),
                                                      (2, False, torch.float64, 1.0, None, True, 16),
                                                      (3, False, torch.float32, None, 6, False, None)):
        pos, batch = _cloud(seed, grid)
        u = torch.rand(pos.shape[0], generator=torch.Generator().manual_seed(seed)) if rand else None
        cases.append((pos.to(dtype), batch, ratio, num, u, True, tile))
    outs = _interpreted(tmp_path, "_fps_index", cases)
    for (pos, batch, ratio, num, u, _, tile), got in zip(cases, outs):
        assert torch.equal(got, _fps_index(pos, batch, ratio, num, u, False)), (ratio, num, tile)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_triton_fps_cuda():
    """Kernel on CUDA equals the CPU torch path: one-tile (graphs <= 4096) and tiled (5000 points)."""
    gen = torch.Generator().manual_seed(11)
    for sizes in ([4096, 300, 1], [5000, 700, 2]):
        batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        pos = torch.randint(0, 20, (batch.numel(), 3), generator=gen).float()  # ties and duplicates
        for dtype in (torch.float32, torch.float64):
            p = pos.to(dtype)
            want = farthest_point_sampling(p, 0.25, batch, random_start=True, generator=torch.Generator().manual_seed(1))
            got = farthest_point_sampling(p.cuda(), 0.25, batch.cuda(), random_start=True,
                                          generator=torch.Generator().manual_seed(1))
            assert torch.equal(got.cpu(), want)
