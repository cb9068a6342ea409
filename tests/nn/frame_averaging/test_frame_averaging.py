"""FrameAveraging around a PointNet: invariance/equivariance through geodl.testing, modes,
batching, folding, differentiable frames (forces), bad input."""

import pytest
import torch
from torch import nn

from backbone_helpers import Reshape

from geodl.groups import random_rotation, random_rotation_2d
from geodl.nn import FrameAveraging, PointNet
from geodl.testing import assert_equivariant, assert_invariant, equivariance_error
from geodl.testing import check_module

F64 = torch.float64
RTOL = {torch.float32: 1e-5, F64: 1e-10}


def cloud(n, d=3, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=g, dtype=F64) * torch.arange(1, d + 1, dtype=F64) + 0.3).to(dtype)


def pointnet(out=3, in_channels=0, level="graph", d=3, **kw):
    torch.manual_seed(0)
    return PointNet(in_channels, out, hidden_channels=(16, 32), head_channels=(16,), level=level, pos_channels=d, **kw)


def fa(out=3, in_channels=0, level="graph", group="E3", output="invariant", dtype=F64, d=3, inputs=None, **kw):
    backbone = pointnet(out, in_channels, level, d)
    return FrameAveraging(backbone, group=group, output=output, level=level, inputs=inputs, **kw).to(dtype)


@pytest.mark.parametrize("output, level, out", [("invariant", "graph", 2), ("vectors", "node", 3)])
def test_check_module_frame_averaging(output, level, out):
    pos = cloud(12)
    batch = torch.tensor([0] * 5 + [1] * 7)
    # degeneracy="flag" and num_graphs: nothing reads a value back, so the compile item runs with fullgraph=True
    check_module(fa(out=out, output=output, level=level, degeneracy="flag"), {"pos": pos, "batch": batch, "num_graphs": 2})


# ------------------------------------------------------------------ invariance via the harness
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_fa_pointnet_is_invariant_under_e3_and_permutations(dtype):
    net = fa(in_channels=2, dtype=dtype, inputs={"pos": "points", "x": "scalar"})
    inputs = {"pos": cloud(24, dtype=dtype), "x": cloud(24, 2, seed=1, dtype=dtype)}
    assert_invariant(net, inputs, {"pos": "node:points", "x": "perm"}, "E3+perm", generator=0, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_fa_o3_keeps_the_origin_and_is_o3_invariant(dtype):
    net = fa(group="O3", dtype=dtype)
    pos = cloud(20, dtype=dtype)
    assert_invariant(lambda p: net(pos=p), (pos,), ("node:points",), "O3", generator=1, rtol=RTOL[dtype])
    # O(3) frames do not centre: a translation changes the output
    assert not equivariance_error(lambda p: net(pos=p), (pos,), ("node:points",), "scalar", "E3", generator=1).passed


def test_so3_variant_fails_only_on_reflections():
    net = fa(group="SE3")
    pos = cloud(20, seed=2)
    fn = lambda p: net(pos=p)  # noqa: E731
    assert_invariant(fn, (pos,), ("node:points",), "SE3", generator=0, rtol=1e-10)
    report = equivariance_error(fn, (pos,), ("node:points",), "scalar", "E3", generator=0, rtol=1e-10)
    assert not report.passed
    failing = {row.element for row in report.rows if not row.passed}
    assert "reflection" in failing
    assert {row.element for row in report.rows if row.passed} >= {"identity", "translation"}
    assert "reflection" in str(report) and "FAIL" in str(report)


@pytest.mark.parametrize("group", ["O2", "SO2"])
def test_2d_frame_averaging_is_invariant(group):
    net = fa(group=group, d=2)
    pos = cloud(15, d=2, seed=3)
    assert_invariant(lambda p: net(pos=p), (pos,), ("node:points",), group, generator=0, rtol=1e-10)


def test_e2_frame_averaging_is_translation_and_reflection_invariant():
    net = fa(group="E2", d=2)
    pos = cloud(15, d=2, seed=4)
    R = random_rotation_2d(generator=torch.Generator().manual_seed(0), dtype=F64) @ torch.diag(torch.tensor([-1.0, 1.0], dtype=F64))
    y, yg = net(pos=pos), net(pos=pos @ R.T + torch.tensor([3.0, -1.0], dtype=F64))
    assert torch.allclose(yg, y, rtol=1e-10, atol=1e-10 * float(y.detach().abs().max()))


# ------------------------------------------------------------------ equivariant outputs
@pytest.mark.parametrize(
    "output, level, shape, kind",
    [
        ("vectors", "node", (2, 3), "node:vectors"),
        ("points", "node", (3,), "node:points"),
        ("vectors", "graph", (2, 3), "vectors"),
        ("points", "graph", (3,), "points"),
        ("pseudovectors", "graph", (3,), "pseudovectors"),
        ("tensor2", "graph", (3, 3), "tensor2"),
        ("invariant", "node", (4,), "node:scalar"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_fa_outputs_are_equivariant(output, level, shape, kind, dtype):
    width = int(torch.tensor(shape).prod())
    net = FrameAveraging(
        Reshape(pointnet(width, in_channels=4, level=level), *shape),
        group="E3",
        output=output,
        level=level,
        inputs={"pos": "points", "x": "scalar", "vel": "vectors"},
    ).to(dtype)
    inputs = {"pos": cloud(18, dtype=dtype), "x": cloud(18, 1, seed=5, dtype=dtype), "vel": cloud(18, seed=6, dtype=dtype)}
    in_kinds = {"pos": "node:points", "x": "perm", "vel": "node:vectors"}
    assert_equivariant(net, inputs, in_kinds, kind, "E3+perm", generator=0, rtol=RTOL[dtype])


def test_pseudovector_output_differs_from_vector_output_under_reflection():
    """Without the det factor a pseudovector output would fail; check the harness sees it."""
    net = FrameAveraging(pointnet(3), group="E3", output="vectors").double()
    fn = lambda p: net(pos=p)  # noqa: E731
    pos = cloud(18, seed=7)
    assert equivariance_error(fn, (pos,), ("node:points",), "vectors", "E3", generator=0).passed
    assert not equivariance_error(fn, (pos,), ("node:points",), "pseudovectors", "E3", generator=0).passed


# ------------------------------------------------------------------ modes
def test_stochastic_over_all_frames_equals_full():
    full = fa(in_channels=1)
    g = torch.Generator().manual_seed(0)
    stoch = FrameAveraging(full.module, group="E3", mode="stochastic", num_samples=8, generator=g)
    pos, x = cloud(20), cloud(20, 1, seed=1)
    batch = torch.tensor([0] * 9 + [1] * 11)
    assert torch.allclose(stoch(x, pos, batch), full(x, pos, batch), rtol=1e-12, atol=1e-14)


def test_stochastic_single_frame_is_seeded_and_samples_the_frames_uniformly():
    full = fa()
    pos = cloud(20, seed=8)

    @torch.no_grad()
    def one(seed):
        g = torch.Generator().manual_seed(seed)
        return FrameAveraging(full.module, group="E3", mode="stochastic", generator=g)(pos=pos)

    assert torch.equal(one(3), one(3))
    draws = torch.cat([one(s) for s in range(60)])
    # the draws take exactly F = 8 distinct values (one per frame); their mean is the full output
    distinct = [draws[0]]
    for d in draws[1:]:
        if min(float((d - u).abs().max()) for u in distinct) > 1e-9:
            distinct.append(d)
    assert len(distinct) == 8
    assert torch.allclose(torch.stack(distinct).mean(0), full(pos=pos)[0].detach(), atol=1e-12)


def test_canonical_mode_uses_one_frame_and_is_not_invariant():
    net = FrameAveraging(pointnet(), group="E3", mode="canonical").double()
    pos = cloud(20, seed=9)
    fn = lambda p: net(pos=p)  # noqa: E731
    assert not equivariance_error(fn, (pos,), ("node:points",), "scalar", "E3", generator=0).passed


# ------------------------------------------------------------------ batching and folding
@pytest.mark.parametrize("level", ["graph", "node"])
def test_batched_output_equals_per_sample_output(level):
    output = "points" if level == "node" else "invariant"
    net = fa(level=level, output=output)
    clouds = [cloud(n, seed=s) for s, n in enumerate((7, 12, 9))]
    pos = torch.cat(clouds)
    batch = torch.cat([torch.full((len(c),), i) for i, c in enumerate(clouds)])
    perm = torch.randperm(len(pos), generator=torch.Generator().manual_seed(0))
    out = net(pos=pos[perm], batch=batch[perm])
    single = [net(pos=c) for c in clouds]
    if level == "graph":
        assert torch.allclose(out, torch.cat(single), atol=1e-12)
    else:
        assert torch.allclose(out, torch.cat(single)[perm], atol=1e-12)


class Spy(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, x, pos, batch, **kw):
        self.calls.append((pos.shape[0], batch.clone()))
        return self.inner(x, pos, batch, **kw)


def test_frames_are_folded_into_one_sorted_backbone_call():
    spy = Spy(pointnet())
    net = FrameAveraging(spy, group="E3").double()
    batch = torch.tensor([0] * 6 + [1] * 8)
    net(pos=cloud(14), batch=batch)
    assert len(spy.calls) == 1
    n, folded = spy.calls[0]
    assert n == 14 * 8
    expected = torch.cat([torch.full((size,), b * 8 + f) for b, size in ((0, 6), (1, 8)) for f in range(8)])
    assert torch.equal(folded, expected)  # graph b in frame f is graph b*F + f, sorted


def test_chunking_calls_the_backbone_per_chunk_and_gives_the_same_result():
    spy = Spy(pointnet())
    full = FrameAveraging(spy, group="E3").double()
    chunked = FrameAveraging(spy, group="E3", chunk_size=3).double()
    pos, batch = cloud(14), torch.tensor([0] * 6 + [1] * 8)
    y = full(pos=pos, batch=batch)
    spy.calls.clear()
    assert torch.allclose(chunked(pos=pos, batch=batch), y, atol=1e-12)
    assert [c[0] for c in spy.calls] == [14 * 3, 14 * 3, 14 * 2]


def test_augment_policy_in_frame_averaging_runs_on_a_cube():
    cube = torch.tensor([[i, j, k] for i in (0.0, 1.0) for j in (0.0, 1.0) for k in (0.0, 1.0)], dtype=F64)
    g = torch.Generator().manual_seed(0)
    net = FrameAveraging(pointnet(), group="E3", degeneracy="augment", augment_samples=4, generator=g).double()
    assert net(pos=cube).shape == (1, 3)
    with pytest.raises(ValueError, match="pos: degenerate"):
        FrameAveraging(pointnet(), group="E3", degeneracy="raise").double()(pos=cube)


class DenseAdapter(nn.Module):
    """Runs a flat (x, pos, batch) backbone on dense (B, N, ...) input with a (B, N) mask."""

    def __init__(self, inner, level):
        super().__init__()
        self.inner, self.level, self.calls = inner, level, []

    def forward(self, x, pos, mask, **kw):
        B, N = pos.shape[:2]
        self.calls.append(tuple(pos.shape))
        keep = torch.ones(B, N, dtype=torch.bool) if mask is None else mask
        batch = torch.arange(B)[:, None].expand(B, N)[keep]
        out = self.inner(None if x is None else x[keep], pos[keep], batch, **{k: v[keep] for k, v in kw.items()})
        if self.level == "graph":
            return out
        return out.new_zeros(B, N, *out.shape[1:]).index_put((keep.nonzero()[:, 0], keep.nonzero()[:, 1]), out)


@pytest.mark.parametrize("level, output", [("graph", "invariant"), ("node", "points")])
def test_dense_input_with_mask_equals_flat_input(level, output):
    backbone = pointnet(in_channels=1, level=level)
    inputs = {"pos": "points", "x": "scalar"}
    flat = FrameAveraging(backbone, group="E3", output=output, level=level, inputs=inputs).double()
    adapter = DenseAdapter(backbone, level)
    dense = FrameAveraging(adapter, group="E3", output=output, level=level, inputs=inputs).double()
    sizes = (6, 9, 7)
    pos, x = torch.zeros(3, 9, 3, dtype=F64), torch.zeros(3, 9, 1, dtype=F64)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    for b, n in enumerate(sizes):
        pos[b, :n], x[b, :n], mask[b, :n] = cloud(n, seed=b), cloud(n, 1, seed=10 + b), True
    out = dense(x, pos, mask=mask)
    assert adapter.calls == [(3 * 8, 9, 3)]  # frames folded into the dense batch, one call
    batch = torch.arange(3)[:, None].expand(3, 9)[mask]
    ref = flat(x[mask], pos[mask], batch)
    if level == "graph":
        assert torch.allclose(out, ref, atol=1e-12)
    else:
        assert out.shape == (3, 9, 3) and torch.allclose(out[mask], ref, atol=1e-12)
        assert bool((out[~mask] == 0).all())


def test_dense_input_is_invariant():
    net = FrameAveraging(DenseAdapter(pointnet(), "graph"), group="E3").double()
    pos = torch.stack([cloud(8, seed=s) for s in range(3)])
    assert_invariant(lambda p: net(pos=p), (pos,), ("points",), "E3", generator=0, rtol=1e-10)


# ------------------------------------------------------------------ differentiable frames: forces
def _energy_and_forces(differentiable, pos):
    net = FrameAveraging(pointnet(1, pool="mean", act="silu"), group="E3", differentiable=differentiable).double()
    pos = pos.clone().requires_grad_()
    energy = lambda p: net(pos=p).sum()  # noqa: E731
    forces = -torch.autograd.grad(energy(pos), pos)[0]
    return energy, forces


def _finite_difference_forces(energy, pos, h=1e-6):
    fd = torch.zeros_like(pos)
    with torch.no_grad():
        for i in range(pos.shape[0]):
            for j in range(pos.shape[1]):
                e = torch.zeros_like(pos)
                e[i, j] = h
                fd[i, j] = -(energy(pos + e) - energy(pos - e)) / (2 * h)
    return fd


def test_differentiable_frames_give_correct_forces_with_zero_net_force_and_torque():
    pos = cloud(10, seed=11)
    energy, forces = _energy_and_forces(True, pos)
    fd = _finite_difference_forces(energy, pos)
    assert float((forces - fd).abs().max()) <= 1e-6 * float(fd.abs().max())
    assert float(forces.sum(0).abs().max()) <= 1e-8
    assert float(torch.linalg.cross(pos, forces).sum(0).abs().max()) <= 1e-8


def test_detached_frames_give_wrong_forces():
    pos = cloud(10, seed=11)
    energy, forces = _energy_and_forces(False, pos)
    fd = _finite_difference_forces(energy, pos)
    assert float((forces - fd).abs().max()) > 1e-3 * float(fd.abs().max())


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(group="E4"), ValueError, "group: 'E4' has unknown name"),
        (dict(group="tetrahedral"), ValueError, "group: PCA frames exist for"),
        (dict(output="spinor"), ValueError, "output: .*unknown kind"),
        (dict(output="sh:2"), ValueError, "output: frames act on the kinds"),
        (dict(mode="all"), ValueError, "mode: expected one of"),
        (dict(level="edge"), ValueError, "level: expected one of"),
        (dict(inputs={"pos": "points", "vel": "spinor"}), ValueError, r"inputs\['vel'\]: .*unknown kind"),
        (dict(inputs={"pos": "vectors"}), ValueError, "inputs: 'pos' must be"),
        (dict(chunk_size=0), ValueError, "chunk_size"),
        (dict(num_samples=0), ValueError, "num_samples"),
        (dict(degeneracy="silent"), ValueError, "degeneracy: expected one of"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FrameAveraging(pointnet(), **kwargs)


def test_bad_module_rejected():
    with pytest.raises(TypeError, match="module"):
        FrameAveraging(42)


def test_bad_forward_input():
    net = fa()
    pos = cloud(10)
    with pytest.raises(ValueError, match="pos: required"):
        net()
    with pytest.raises(ValueError, match="pos: contains NaN"):
        net(pos=torch.full((4, 3), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="pos: empty"):
        net(pos=torch.zeros(0, 3, dtype=F64))
    with pytest.raises(ValueError, match="pos: .*fewer than 2"):
        net(pos=pos[:1])
    with pytest.raises(ValueError, match=r"batch: expected shape \(10,\)"):
        net(pos=pos, batch=torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="acc: no kind declared"):
        net(pos=pos, acc=pos)
    with pytest.raises(ValueError, match=r"x: expected leading shape \(10,\)"):
        net(x=torch.ones(9, 1, dtype=F64), pos=pos)
    with pytest.raises(ValueError, match="pos: expected a tensor with 2 or 3 dimensions"):
        net(pos=pos[0])
    with pytest.raises(ValueError, match="mask: only for dense"):
        net(pos=pos, mask=torch.ones(10, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch: must be None for dense"):
        net(pos=pos[None], batch=torch.zeros(10, dtype=torch.long))
    with pytest.raises(TypeError, match="mask: expected dtype"):
        net(pos=pos[None], mask=torch.ones(1, 10))


def test_module_output_that_does_not_fit_the_output_kind():
    with pytest.raises(ValueError, match="output: 'vectors' needs module outputs ending in 3"):
        fa(out=4, output="vectors")(pos=cloud(10))
    with pytest.raises(ValueError, match=r"module: expected 8 per-graph output rows"):
        FrameAveraging(pointnet(level="node"), group="E3").double()(pos=cloud(10))
