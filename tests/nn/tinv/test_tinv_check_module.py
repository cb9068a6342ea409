"""TinvRepresentation and TinvNN through geodl.testing.check_module: invariance to rotations,
reflections, translations, scaling and permutations at the issue's bounds, the handed variant's
reflection failure, the equivariant extension, graph coordinates, DGCNN."""

import pytest
import torch
from _tinv_helpers import BOUND, F64, Reshape, assert_bounded, cloud, error_rows, two_clouds

from geodl.nn import DGCNN, PointNet, TinvNN
from geodl.nn.tinv import TinvRepresentation
from geodl.testing import CHECKS, check_module


def pointnet(out=2, in_channels=0, level="graph"):
    torch.manual_seed(0)
    return PointNet(in_channels, out, hidden_channels=(8, 16), head_channels=(8,), level=level)


# ------------------------------------------------------------------ check_module
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_check_module_representation(dtype):
    pos, batch = two_clouds(dtype)
    # the compile item runs once, for TinvNN in float64 below (it takes seconds)
    report = check_module(TinvRepresentation(degeneracy="flag"), {"pos": pos, "batch": batch, "num_graphs": 2},
                          dtype=dtype, checks=("equivariance", "batching", "state_dict", "gradients", "side_effects"))
    assert report.passed and report.group == "E3+perm+scale"
    assert_bounded(report, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_check_module_tinvnn_pointnet(dtype):
    pos, batch = two_clouds(dtype)
    net = TinvNN(pointnet(), degeneracy="flag")
    checks = ("equivariance", "batching") if dtype == torch.float32 else CHECKS  # the whole battery once
    report = check_module(net, {"pos": pos, "batch": batch, "num_graphs": 2}, dtype=dtype, checks=checks)
    assert report.passed, report
    assert_bounded(report, dtype)


def test_handed_variant_is_not_reflection_invariant():
    pos, batch = two_clouds()
    inputs = {"pos": pos, "batch": batch, "num_graphs": 2}
    handed = TinvRepresentation(handed=True, degeneracy="flag")
    assert handed.symmetry.group == "SE3+perm+scale"
    assert check_module(handed, inputs, checks=("equivariance",)).passed  # its own declaration holds
    report = check_module(handed, inputs, group="E3+perm+scale", checks=("equivariance",), raise_on_fail=False)
    assert report.failed == ["equivariance"]
    rows = error_rows(report)
    assert rows["reflection"][1] == "FAIL" and rows["reflection"][0] > 1e-2
    for el in ("rotation", "translation", "perm", "scale", "identity"):
        assert rows[el][1] == "ok" and rows[el][0] <= BOUND[F64], (el, rows)
    # the mirror image has the last column negated, the others unchanged
    mirror = pos * torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    a, b = handed(pos, batch), handed(mirror, batch)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-12) and torch.allclose(a[:, 2], -b[:, 2], atol=1e-12)


def test_without_scale_normalisation_the_declaration_drops_scale():
    pos, batch = two_clouds()
    rep = TinvRepresentation(normalize_scale=False, degeneracy="flag")
    assert rep.symmetry.group == "E3+perm"
    report = check_module(rep, {"pos": pos, "batch": batch, "num_graphs": 2}, checks=("equivariance", "batching"))
    assert_bounded(report, F64, elements=("reflection", "translation", "perm", "haar"))
    assert not check_module(rep, {"pos": pos, "batch": batch}, group="E3+perm+scale", checks=("equivariance",),
                            raise_on_fail=False).passed


@pytest.mark.parametrize("output, level, shape", [
    ("vectors", "node", (2, 3)), ("points", "node", (3,)), ("vectors", "graph", (3,)), ("points", "graph", (3,)),
    ("pseudovectors", "graph", (3,)), ("tensor2", "graph", (3, 3))])
def test_equivariant_extension(output, level, shape):
    pos, batch = two_clouds()
    width = int(torch.tensor(shape).prod())
    net = TinvNN(Reshape(pointnet(width, in_channels=3, level=level), *shape), output=output, level=level,
                 degeneracy="flag", inputs={"pos": "points", "vel": "vectors"})
    report = check_module(net, {"pos": pos, "batch": batch, "vel": cloud(27, 5), "num_graphs": 2},
                          checks=("equivariance", "batching", "gradients"))
    assert report.passed and report.group == "E3+perm+scale"
    assert "vel" in net.symmetry.in_kinds


def spiders(*legs):
    """Edges and batch of spider trees with the given leg lengths (no automorphism when the lengths differ)."""
    edges, batch, off = [], [], 0
    for b, lengths in enumerate(legs):
        nxt = off + 1
        for length in lengths:
            prev = off
            for _ in range(length):
                edges.append((prev, nxt))
                prev, nxt = nxt, nxt + 1
        batch += [b] * (nxt - off)
        off = nxt
    return torch.tensor(edges).T, torch.tensor(batch)


def test_graph_source_is_permutation_invariant():
    edges, batch = spiders((1, 2, 3), (1, 2, 4))
    torch.manual_seed(0)
    net = TinvNN(PointNet(1, 2, hidden_channels=(8, 16), head_channels=(8,)), source="graph", graph_dim=3,
                 degeneracy="flag", inputs={"x": "scalar", "edge_index": "edge_index"}).double()
    x = cloud(len(batch), 3, d=1)
    report = check_module(net, {"x": x, "edge_index": edges, "batch": batch},
                          checks=("equivariance", "batching", "state_dict", "gradients"))
    assert report.passed and report.group == "perm"
    out, mask = net(x, edge_index=edges, batch=batch, return_mask=True)
    assert out.shape == (2, 2) and mask.tolist() == [False, False]


def test_check_module_tinvnn_dgcnn():
    torch.manual_seed(0)
    dgcnn = DGCNN(0, 2, k=4, conv_channels=(8, 8), emb_channels=16, head_channels=(8,), dropout=0.0)
    pos, batch = two_clouds()
    report = check_module(TinvNN(dgcnn, degeneracy="flag"), {"pos": pos, "batch": batch, "num_graphs": 2},
                          checks=("equivariance", "batching", "state_dict", "gradients", "side_effects"))
    assert report.passed and report.group == "E3+perm+scale"
    assert_bounded(report, F64)
