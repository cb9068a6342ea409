"""knn_graph, radius_graph, farthest_point_sampling: parity with PyG / torch-cluster (whose kernels
are not installable here, so their documented semantics and the expected values of their own test
cases are checked against brute force), the precision limits, size checks and empty inputs.

Tests taking ``backend`` run once per back end (``conftest.py``); the Triton cases run through the
interpreter in ``test_triton_cases_interpreted``.
"""

from __future__ import annotations

import math

import pytest
import torch
from _triton_interp import INTERPRETING, run_pytest  # tests/ops helper (pytest puts this folder on sys.path)
from test_neighbors import _brute, _cloud  # dense brute-force reference (ties by index)

from geodl import _checks as S
from geodl.ops import farthest_point_sampling, knn_graph, radius_graph


def _edge_set(edge_index):
    return set(map(tuple, edge_index.t().tolist()))


# --------------------------------------------------------------------------- flow (PyG's argument)
def test_knn_flow_swaps_rows(backend):
    pos = torch.tensor([[0.0], [1.0], [3.0]])  # asymmetric: 2's nearest is 1, 1's nearest is 0
    s2t = torch.tensor([[1, 0, 1], [0, 1, 2]])
    assert torch.equal(knn_graph(pos, 1), s2t)
    assert torch.equal(knn_graph(pos, 1, flow="source_to_target"), s2t)
    assert torch.equal(knn_graph(pos, 1, flow="target_to_source"), s2t.flip(0))
    assert torch.equal(knn_graph(pos, 1, None, False, "target_to_source"), s2t.flip(0))  # PyG's positions
    with pytest.raises(ValueError, match="^flow: "):
        knn_graph(pos, 1, flow="both")


def test_radius_flow_and_pyg_positional_order(backend):
    pos = torch.tensor([[0.0], [1.0], [3.0], [3.5]])
    s2t = radius_graph(pos, 2.0)
    assert torch.equal(s2t, _brute(pos, torch.zeros(4, dtype=torch.long), False, r=2.0))
    # PyG's radius_graph(x, r, batch, loop, max_num_neighbors, flow)
    assert torch.equal(radius_graph(pos, 2.0, None, False, 32, "target_to_source"), s2t.flip(0))
    assert torch.equal(radius_graph(pos, 2.0, flow="target_to_source"), s2t.flip(0))
    with pytest.raises(ValueError, match="^flow: "):
        radius_graph(pos, 2.0, flow="source")


def test_torch_cluster_knn_graph_cases(backend):
    """torch-cluster's test_knn_graph: the unit square, k = 2, both flows give these edge sets."""
    x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    t2s = {(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)}
    assert _edge_set(knn_graph(x, k=2, flow="target_to_source")) == t2s
    assert _edge_set(knn_graph(x, k=2, flow="source_to_target")) == {(j, i) for i, j in t2s}


def test_torch_cluster_knn_graph_large_against_kdtree():
    """torch-cluster's test_knn_graph_large: 1000 points, k = 5, loop, "target_to_source" equals a
    k-d tree's query (which includes the point itself)."""
    spatial = pytest.importorskip("scipy.spatial")
    x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0))
    edge_index = knn_graph(x, 5, loop=True, flow="target_to_source")
    _, col = spatial.cKDTree(x.numpy()).query(x.numpy(), k=5)
    assert _edge_set(edge_index) == {(i, int(j)) for i, ns in enumerate(col) for j in ns}


# --------------------------------------------------------------------------- cosine
def test_knn_cosine_ranks_by_angle(backend):
    pos = torch.tensor([[1.0, 0.0], [10.0, 1.0], [0.5, 0.5], [-1.0, 0.2], [0.1, 3.0]])
    unit = pos / pos.norm(dim=1, keepdim=True)
    got = knn_graph(pos, 2, cosine=True)
    assert torch.equal(got, _brute(unit, torch.zeros(5, dtype=torch.long), False, k=2))
    assert got[0, 0] == 1 and knn_graph(pos, 1)[0, 0] == 2  # point 0: nearest by angle is 1, by distance 2
    # torch-cluster's cosine case: (1, 0) against the square's corners: (1, 1) and (1, -1) at 1 - cos(pi/4)
    sq = torch.tensor([[1.0, 0.0], [-1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [1.0, -1.0]])
    e = knn_graph(sq, 2, cosine=True)
    assert set(e[0, e[1] == 0].tolist()) == {3, 4}
    with pytest.raises(ValueError, match="^pos: cosine=True needs non-zero points"):
        knn_graph(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 1, cosine=True)


# --------------------------------------------------------------------------- radius: PyG parity facts
def test_pyg_radius_graph_transform_case(backend):
    """PyG's RadiusGraph(r=1.5) test case (guards unchanged behaviour)."""
    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -2.0]])
    e = radius_graph(pos, 1.5)
    assert sorted(_edge_set(e)) == sorted(zip([0, 0, 1, 1, 1, 2, 3, 3], [1, 3, 0, 2, 3, 1, 0, 1]))


def test_radius_default_is_unlimited_and_cap_keeps_nearest():  # torch only (slow interpreted)
    """Documented difference: no default cap (PyG: 32); with max_num_neighbors=32 the nearest 32
    are kept (torch-cluster keeps the first found); points on the sphere count (torch-cluster: < r).
    Guards unchanged behaviour."""
    gen = torch.Generator().manual_seed(1)
    pos = torch.cat([torch.zeros(1, 3), torch.rand(40, 3, generator=gen) * 0.5])  # 40 around point 0
    batch = torch.zeros(41, dtype=torch.long)
    e = radius_graph(pos, 1.0)
    assert int((e[1] == 0).sum()) == 40
    capped = radius_graph(pos, 1.0, max_num_neighbors=32)
    assert int((capped[1] == 0).sum()) == 32
    assert torch.equal(capped, _brute(pos, batch, False, k=32, r=1.0))
    assert torch.equal(radius_graph(torch.tensor([[0.0], [1.0]]), 1.0), torch.tensor([[1, 0], [0, 1]]))


# --------------------------------------------------------------------------- fps: PyG's order
def test_torch_cluster_fps_case(backend):
    """torch-cluster's test_fps: ratio 0.5, no random start (guards unchanged behaviour)."""
    x = torch.tensor([[-1.0, -1], [-1, 1], [1, 1], [1, -1], [-2, -2], [-2, 2], [2, 2], [2, -2]])
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert farthest_point_sampling(x, 0.5, batch).tolist() == [0, 2, 4, 6]
    assert farthest_point_sampling(x, 0.5, batch=batch, random_start=False).tolist() == [0, 2, 4, 6]


def test_fps_pyg_positional_order_fails_loudly():
    x, batch = torch.randn(8, 2), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    with pytest.raises(TypeError, match=r"^ratio: .*Tensor.*order.*PyG's fps\(src, batch, ratio, random_start\)"):
        farthest_point_sampling(x, batch, 0.5)  # PyG's fps(src, batch, ratio)
    with pytest.raises(TypeError, match=r"^ratio: .*order"):
        farthest_point_sampling(x, batch)  # PyG's fps(src, batch) with its default ratio
    with pytest.raises(TypeError, match=r"^ratio: .*order"):
        farthest_point_sampling(x, torch.tensor(0.5))  # a 0-d tensor is not taken as a ratio either
    with pytest.raises(TypeError, match=r"^batch: .*float.*PyG"):
        farthest_point_sampling(x, 0.5, 0.5)


# --------------------------------------------------------------------------- precision limits
def test_half_precision_is_searched_in_float32(backend):
    """float16/bfloat16 are upcast: the result is the exact float32 graph of the same points (before,
    half-precision distances under a float32 screening margin matched neither brute force)."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.bfloat16, torch.float16):
        pos = torch.randn(60, 3, generator=gen).to(dtype)  # the baseline got k = 4 wrong for both dtypes
        batch = torch.zeros(60, dtype=torch.long)
        ref = pos.float()
        for k in (1, 4):
            assert torch.equal(knn_graph(pos, k), _brute(ref, batch, False, k=k)), (dtype, k)
        assert torch.equal(radius_graph(pos, 0.5), _brute(ref, batch, False, r=0.5)), dtype
        assert torch.equal(radius_graph(pos, 0.5, max_num_neighbors=4), _brute(ref, batch, False, k=4, r=0.5))


def test_float16_beyond_256_no_longer_overflows(backend):
    """Squares of float16 differences past 256 overflow; the float32 search orders them right (the
    baseline took the overflowed 300^2 and 310^2 as equal and ordered point 0's neighbours 1, 2, 3)."""
    pos = torch.tensor([[0.0], [310.0], [-300.0], [300.0]], dtype=torch.float16)
    batch = torch.zeros(4, dtype=torch.long)
    assert torch.equal(knn_graph(pos, 3), _brute(pos.float(), batch, False, k=3))
    assert knn_graph(pos, 3)[0, :3].tolist() == [2, 3, 1]
    assert torch.equal(radius_graph(pos, 605.0), _brute(pos.float(), batch, False, r=605.0))


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 1e20), (torch.float64, 1e155)])
def test_overflowing_extent_raises(dtype, scale, backend):
    """Squared distances that would overflow the dtype: ValueError naming pos, every op."""
    pos, batch = _cloud(0)
    pos = pos.to(dtype) * scale
    for call in (lambda: knn_graph(pos, 3, batch), lambda: radius_graph(pos, scale, batch),
                 lambda: radius_graph(pos, scale, batch, max_num_neighbors=2),
                 lambda: farthest_point_sampling(pos, 0.5, batch)):
        with pytest.raises(ValueError, match="^pos: .*overflow"):
            call()
    with pytest.raises(ValueError, match="^pos: .*overflow"):
        farthest_point_sampling(torch.tensor([[0.0], [300.0]], dtype=torch.float16), num=2)


def test_underflowing_extent_raises_for_the_screened_search(backend):
    """A graph spanning less than sqrt(d * tiny) (but not a single point): the screening's rounding
    margin no longer covers underflowing squared distances, so kNN/radius raise; FPS (no screening)
    does not, and all-equal points (every distance exactly 0) are fine."""
    pos = torch.tensor([[0.0], [1e-25], [3e-25], [2.5e-25]])
    for call in (lambda: knn_graph(pos, 1), lambda: radius_graph(pos, 1e-24),
                 lambda: radius_graph(pos, 1e-24, max_num_neighbors=1)):
        with pytest.raises(ValueError, match="^pos: .*underflow"):
            call()
    assert farthest_point_sampling(pos, num=2).shape == (2,)
    same = torch.full((5, 3), 1e-30)
    assert torch.equal(knn_graph(same, 2), _brute(same, torch.zeros(5, dtype=torch.long), False, k=2))
    # one graph too narrow, the other fine: the message names the graph
    batch = torch.tensor([0, 0, 1, 1])
    wide = torch.tensor([[0.0], [1.0], [0.0], [1e-25]])
    with pytest.raises(ValueError, match="^pos: the points of graph 1 "):
        knn_graph(wide, 1, batch)


def test_extents_inside_the_limits_are_exact():  # torch only (slow interpreted)
    """Just inside the limits the search still equals brute force (guards unchanged behaviour)."""
    gen = torch.Generator().manual_seed(3)
    for scale in (1e18, 1e-18):
        pos = torch.rand(60, 3, generator=gen) * scale
        batch = torch.zeros(60, dtype=torch.long)
        assert torch.equal(knn_graph(pos, 4), _brute(pos, batch, False, k=4))
        assert torch.equal(radius_graph(pos, 0.4 * scale), _brute(pos, batch, False, r=0.4 * scale))


# --------------------------------------------------------------------------- sizes and empty inputs
def test_sizes_checked_before_allocating(monkeypatch):
    """With the memory made small, each size argument is named before anything big is built."""
    monkeypatch.setattr(S, "_CHECKED_BYTES", 0)
    pos = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(S, "_available_bytes", lambda device: 8000)
    with pytest.raises(ValueError, match=r"^k: 10 asks for .* GiB of memory"):
        knn_graph(pos, 10)  # 640 edges
    with pytest.raises(ValueError, match=r"^max_num_neighbors: 10 asks for"):
        radius_graph(pos, 10.0, max_num_neighbors=10)
    with pytest.raises(ValueError, match=r"^chunk_size: "):
        knn_graph(pos, 1)  # 64 edges fit, the 64 x 64 block of scores does not
    monkeypatch.setattr(S, "_available_bytes", lambda device: 30000)
    with pytest.raises(ValueError, match=r"^r: 10.0 asks for"):
        radius_graph(pos, 10.0)  # every pair: 4032 edges
    monkeypatch.setattr(S, "_available_bytes", lambda device: 100)
    with pytest.raises(ValueError, match=r"^ratio: 1.0 asks for"):
        farthest_point_sampling(pos, 1.0)
    with pytest.raises(ValueError, match=r"^num: 64 asks for"):
        farthest_point_sampling(pos, num=64)


def test_huge_counts_are_clamped(backend):
    """k, max_num_neighbors and num beyond any graph (even past int64) give all points, as PyG."""
    pos, batch = _cloud(1)
    everything = _brute(pos, batch, False)
    assert torch.equal(knn_graph(pos, 10**30, batch), everything)
    assert torch.equal(radius_graph(pos, 1e3, batch, max_num_neighbors=10**30), everything)
    assert torch.equal(torch.sort(farthest_point_sampling(pos, batch=batch, num=10**30)).values,
                       torch.arange(pos.shape[0]))


def test_k_larger_than_graphs_gives_all_other_points(backend):
    """PyG's behaviour for k >= graph size: every other point of the graph (guards unchanged behaviour)."""
    pos = torch.tensor([[0.0], [1.0], [5.0], [7.0], [8.0]])
    batch = torch.tensor([0, 0, 1, 1, 1])
    assert torch.equal(knn_graph(pos, 4, batch), torch.tensor([[1, 0, 3, 4, 4, 2, 3, 2], [0, 1, 2, 2, 3, 3, 4, 4]]))
    assert torch.equal(knn_graph(pos, 4, batch, loop=True)[:, :3], torch.tensor([[0, 1, 1], [0, 0, 1]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_empty_inputs(dtype, backend):
    """Empty clouds (with or without batch) give (2, 0) edges / (0,) samples of dtype long on pos's
    device; a batch that skips graph ids, or a one-point graph, gives no edges there."""
    for batch in (None, torch.empty(0, dtype=torch.long)):
        pos = torch.empty(0, 3, dtype=dtype)
        for e in (knn_graph(pos, 3, batch), radius_graph(pos, 1.0, batch),
                  radius_graph(pos, 1.0, batch, max_num_neighbors=2),
                  knn_graph(pos, 3, batch, flow="target_to_source")):
            assert e.shape == (2, 0) and e.dtype == torch.long and e.device == pos.device
        for i in (farthest_point_sampling(pos, 0.5, batch), farthest_point_sampling(pos, batch=batch, num=4)):
            assert i.shape == (0,) and i.dtype == torch.long
    pos = torch.tensor([[0.0], [1.0], [9.0]], dtype=dtype)
    batch = torch.tensor([0, 0, 3])  # graphs 1 and 2 empty, graph 3 a single point
    assert torch.equal(knn_graph(pos, 2, batch), torch.tensor([[1, 0], [0, 1]]))
    assert radius_graph(pos, 100.0, batch).shape == (2, 2)
    assert farthest_point_sampling(pos, 1.0, batch).tolist() == [0, 1, 2]


def test_zero_dimensional_points_raise():
    for call in (lambda: knn_graph(torch.empty(4, 0), 2), lambda: radius_graph(torch.empty(4, 0), 1.0),
                 lambda: farthest_point_sampling(torch.empty(4, 0), 0.5)):
        with pytest.raises(ValueError, match=r"^pos: expected at least one coordinate"):
            call()


@pytest.mark.skipif(INTERPRETING, reason="this is the interpreter's own run of these tests")
def test_triton_cases_interpreted():
    """The ``[triton]`` cases of this module (Triton kernels on CPU tensors) under the interpreter."""
    pytest.importorskip("triton")
    run_pytest([__file__, "-k", "triton"])


def test_compile_fullgraph_with_flow_cosine_and_half():
    """The new arguments and the float16 upcast trace under torch.compile(fullgraph=True)."""
    def f(pos, batch):
        return (knn_graph(pos, 3, batch, flow="target_to_source", cosine=True),
                radius_graph(pos.half(), 0.8, batch, flow="target_to_source"))

    pos, batch = _cloud(9)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(pos, batch), f(pos, batch)):
        assert torch.equal(got, want)


def test_batch_on_another_device_and_bad_generator():
    """Fuzz findings F33/F34: clean errors naming the argument (before: the op's dispatch error /
    an AttributeError)."""
    pos = torch.randn(4, 3)
    batch = torch.zeros(4, dtype=torch.long, device="meta")
    for call in (lambda: knn_graph(pos, 2, batch), lambda: radius_graph(pos, 1.0, batch),
                 lambda: farthest_point_sampling(pos, 0.5, batch)):
        with pytest.raises(ValueError, match="^batch: expected device cpu, got meta"):
            call()
    with pytest.raises(TypeError, match="^generator: expected a torch.Generator"):
        farthest_point_sampling(pos, 0.5, random_start=True, generator="gen")
