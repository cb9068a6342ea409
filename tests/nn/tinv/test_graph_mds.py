"""classical_mds and graph_mds: Euclidean distances give the cloud back, shortest-path distances of a
non-Euclidean graph report their negative eigenvalues, clamp vs drop, bad input."""

import numpy as np
import pytest
import torch
from _tinv_helpers import F64, cloud

from geodl.nn import PointNet, TinvNN, tinv_coordinates
from geodl.nn.tinv import MDSResult, classical_mds, graph_mds
from geodl.testing import check_module

STAR = torch.tensor([[0, 0, 0], [1, 2, 3]])  # K_{1,3}: leaves 2 apart, 1 from the centre


def test_check_module_graph_tinvnn_node_level():
    # a path with a branch (no automorphism): 0-1-2-3-4, 1-5, 5-6
    edges = torch.tensor([[0, 1, 2, 3, 1, 5], [1, 2, 3, 4, 5, 6]])
    torch.manual_seed(0)
    net = TinvNN(PointNet(0, 2, hidden_channels=(8,), head_channels=(8,), pos_channels=2, level="node"),
                 source="graph", graph_dim=2, level="node", inputs={"edge_index": "edge_index"})
    report = check_module(net, {"edge_index": edges, "batch": torch.zeros(7, dtype=torch.long)},
                          checks=("equivariance", "batching"))
    assert report.passed and report.group == "perm"


def star_spectrum():
    D = np.array([[0, 1, 1, 1], [1, 0, 2, 2], [1, 2, 0, 2], [1, 2, 2, 0]], dtype=float)
    J = np.eye(4) - 1 / 4
    return np.sort(np.linalg.eigvalsh(-0.5 * J @ (D**2) @ J))[::-1]


def test_star_reports_its_negative_eigenvalue():
    w = star_spectrum()
    np.testing.assert_allclose(w, [2, 2, 0, -0.25], atol=1e-12)  # analytic: leaf differences, 0, centre vs leaves
    res = graph_mds(STAR, dim=3)
    assert isinstance(res, MDSResult)
    np.testing.assert_allclose(res.dropped.numpy(), w[w < -1e-9], atol=1e-12)
    np.testing.assert_allclose(res.dropped.numpy(), [-0.25], atol=1e-12)
    np.testing.assert_allclose(float(res.negative_mass[0]), 0.25 / 4.25, atol=1e-12)
    np.testing.assert_allclose(res.eigenvalues[0].numpy(), [2, 2, 0], atol=1e-12)
    assert res.dropped_index.tolist() == [0] and res.index.tolist() == [0] * 4
    # the kept coordinates reproduce the Euclidean part: leaves 2 apart; the centre cannot be 1 from them
    d = torch.cdist(res.coords, res.coords)
    assert torch.allclose(d[1:, 1:][~torch.eye(3, dtype=torch.bool)], torch.full((6,), 2.0, dtype=F64), atol=1e-12)
    assert float(d[0, 1]) > 1.1


def test_clamp_and_drop():
    # dim = 4 reaches the negative eigenvalue: clamp keeps a zero column, drop removes it
    Dstar = torch.tensor([[0, 1, 1, 1], [1, 0, 2, 2], [1, 2, 0, 2], [1, 2, 2, 0]], dtype=F64)
    clamp = classical_mds(Dstar, dim=4, negative="clamp")
    drop = classical_mds(Dstar, dim=4, negative="drop")
    assert clamp.coords.shape == (4, 4) and drop.coords.shape == (4, 2)
    assert torch.equal(clamp.coords[:, 2:], torch.zeros(4, 2, dtype=F64))
    np.testing.assert_allclose(clamp.eigenvalues.numpy(), [2, 2, 0, 0], atol=1e-12)
    np.testing.assert_allclose(drop.eigenvalues.numpy(), [2, 2], atol=1e-12)
    for r in (clamp, drop):
        np.testing.assert_allclose(r.dropped.numpy(), [-0.25], atol=1e-12)
    assert torch.allclose(torch.cdist(clamp.coords, clamp.coords), torch.cdist(drop.coords, drop.coords), atol=1e-12)
    with pytest.raises(ValueError, match=r"^negative: 'drop' gives each graph"):
        graph_mds(torch.tensor([[0, 1, 3, 4], [1, 2, 4, 5]]), batch=torch.tensor([0, 0, 0, 1, 1, 1]), negative="drop")
    with pytest.raises(ValueError, match=r"^negative: expected one of \['clamp', 'drop'\]"):
        classical_mds(Dstar, negative="abs")


def test_euclidean_distances_give_the_tinv_coordinates():
    pos = cloud(25, 4)
    res = classical_mds(torch.cdist(pos, pos), dim=3)
    ref = tinv_coordinates(pos, normalize_scale=False)
    assert float((res.coords - ref.coords).abs().max()) < 1e-10
    assert res.dropped.numel() == 0 and float(res.negative_mass) == 0.0
    sq = classical_mds(torch.cdist(pos, pos) ** 2, dim=3, squared=True)
    assert torch.allclose(sq.coords, res.coords, atol=1e-10)


def test_batched_graphs_and_weights():
    # a weighted path 0-1-2 (lengths 1, 3) and a star; parallel edges keep the shortest
    edges = torch.tensor([[0, 1, 1, 3, 3, 3], [1, 2, 2, 4, 5, 6]])
    weight = torch.tensor([1.0, 3.0, 5.0, 1.0, 1.0, 1.0], dtype=F64)
    res = graph_mds(edges, dim=2, edge_weight=weight, batch=torch.tensor([0, 0, 0, 1, 1, 1, 1]))
    path = res.coords[:3]
    np.testing.assert_allclose(torch.cdist(path, path).numpy(), [[0, 1, 4], [1, 0, 3], [4, 3, 0]], atol=1e-12)
    assert res.eigenvalues.shape == (2, 2) and res.dropped_index.tolist() == [1]
    assert res.negative_mass[0] == 0 and float(res.negative_mass[1]) > 0.05


def test_disconnected_and_bad_graphs():
    with pytest.raises(ValueError, match=r"^edge_index: graph is not connected \(2 components\)"):
        graph_mds(torch.tensor([[0, 2], [1, 3]]))
    with pytest.raises(ValueError, match=r"^edge_index: graph is not connected"):
        graph_mds(STAR, num_nodes=5)  # node 4 is isolated
    with pytest.raises(ValueError, match=r"^edge_index: an edge joins two different graphs"):
        graph_mds(torch.tensor([[0, 1], [1, 2]]), batch=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match=r"^edge_index: values must lie in \[0, 3\)"):
        graph_mds(STAR, num_nodes=3)
    with pytest.raises(ValueError, match=r"^edge_index: expected shape \(2, E\)"):
        graph_mds(torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"^edge_index: expected an int64 or int32 tensor"):
        graph_mds(STAR.float())
    with pytest.raises(ValueError, match=r"^edge_weight: expected positive edge lengths"):
        graph_mds(STAR, edge_weight=torch.tensor([1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^edge_index: required with source='graph'"):
        TinvNN(PointNet(), source="graph")(x=torch.ones(4, 0))


def test_bad_distance_matrices():
    D = torch.tensor([[0.0, 1], [1, 0]])
    with pytest.raises(ValueError, match=r"^distances: expected a symmetric matrix"):
        classical_mds(torch.tensor([[0.0, 1], [2, 0]]))
    with pytest.raises(ValueError, match=r"^distances: expected non-negative"):
        classical_mds(-D)
    with pytest.raises(ValueError, match=r"^distances: expected a zero diagonal"):
        classical_mds(D + torch.eye(2))
    with pytest.raises(ValueError, match=r"^distances: contains NaN"):
        classical_mds(D * float("nan"))
    with pytest.raises(ValueError, match=r"^distances: expected a square"):
        classical_mds(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^dim: expected a positive int"):
        classical_mds(D, dim=0)


def test_distance_sizes_are_checked_before_allocation(monkeypatch):
    from geodl import _checks

    monkeypatch.setattr(_checks, "_available_bytes", lambda device: 2**31)
    n = 30000
    path = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    with pytest.raises(ValueError, match=r"^num_nodes: 30000 asks for"):
        graph_mds(path, num_nodes=n)
    with pytest.raises(ValueError, match=r"^edge_index: edges over 30000 nodes asks for"):
        graph_mds(path)
