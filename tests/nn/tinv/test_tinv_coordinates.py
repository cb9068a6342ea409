"""tinv_coordinates: the exact MDS route against the O(N) route, distances, signs, degeneracy on
symmetric clouds (the policies of frame averaging), augment, bad and empty inputs, memory checks."""

import warnings

import pytest
import torch
from _tinv_helpers import F64, assert_bounded, cloud, cube, cylinder, sphere, two_clouds

import geodl.nn.tinv as tinv_mod
from geodl.nn import PointNet, TinvNN, tinv_coordinates
from geodl.nn.tinv import TinvCoordinates, TinvRepresentation
from geodl.testing import check_module


def test_check_module_exact_mds_route():
    pos, batch = two_clouds()
    report = check_module(TinvRepresentation(method="mds", degeneracy="flag"), {"pos": pos, "batch": batch},
                          checks=("equivariance", "batching"))
    assert report.passed
    assert_bounded(report, F64)


# ------------------------------------------------------------------ the two routes
@pytest.mark.parametrize("sizes", [(5,), (40,), (7, 30, 6), (200, 64)])
@pytest.mark.parametrize("handed", [False, True])
def test_mds_and_covariance_routes_agree(sizes, handed):
    pos = torch.cat([cloud(n, seed=i + len(sizes)) for i, n in enumerate(sizes)])
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    a = tinv_coordinates(pos, batch, handed=handed, degeneracy="flag")
    b = tinv_coordinates(pos, batch, method="mds", handed=handed, degeneracy="flag")
    assert not bool(a.degenerate.any())
    for name in ("coords", "basis", "centroid", "scale", "eigenvalues", "sign_margin"):
        err = float((getattr(a, name) - getattr(b, name)).abs().max())
        assert err <= 1e-10, (name, err)
    assert torch.equal(a.index, b.index)


@pytest.mark.parametrize("d", [2, 4])
def test_other_dimensions(d):
    pos = cloud(30, seed=3, d=d)
    a = tinv_coordinates(pos, degeneracy="flag")
    b = tinv_coordinates(pos, method="mds", degeneracy="flag")
    assert a.coords.shape == (30, d) and float((a.coords - b.coords).abs().max()) <= 1e-10
    Q = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(1), dtype=F64))[0]
    c = tinv_coordinates(pos @ Q.T - 2.0, degeneracy="flag")
    assert float((a.coords - c.coords).abs().max()) <= 1e-10


def test_distances_are_preserved_up_to_the_scale():
    pos, batch = two_clouds()
    rec = tinv_coordinates(pos, batch)
    for b in range(2):
        x, y = pos[batch == b], rec.coords[batch == b]
        assert torch.allclose(torch.cdist(y, y) * rec.scale[b], torch.cdist(x, x), atol=1e-12)
        rms = ((x - x.mean(0)) ** 2).sum(1).mean().sqrt()
        assert torch.allclose(rec.scale[b], rms) and torch.allclose((y**2).sum(1).mean(), torch.tensor(1.0, dtype=F64))
    raw = tinv_coordinates(pos, batch, normalize_scale=False)
    assert torch.equal(raw.scale, torch.ones(2, dtype=F64))
    x, y = pos[batch == 1], raw.coords[batch == 1]
    assert torch.allclose(torch.cdist(y, y), torch.cdist(x, x), atol=1e-12)


def test_record_reconstructs_the_coordinates_and_orders_and_signs_columns():
    pos, batch = two_clouds()
    rec = tinv_coordinates(pos, batch)
    assert isinstance(rec, TinvCoordinates)
    g = rec.index
    again = ((pos - rec.centroid[g]).unsqueeze(1) @ rec.basis[g]).squeeze(1) / rec.scale[g, None]
    assert torch.allclose(again, rec.coords, atol=1e-13)
    assert bool((rec.eigenvalues[:, :-1] > rec.eigenvalues[:, 1:]).all())  # descending
    third = torch.stack([(rec.coords[batch == b] ** 3).sum(0) for b in range(2)])
    assert bool((third > 0).all())  # the sign rule: every column's third moment is positive
    eye = torch.eye(3, dtype=F64).expand(2, 3, 3)
    assert torch.allclose(rec.basis.transpose(1, 2) @ rec.basis, eye, atol=1e-12)
    # centred coordinates sum to zero: a column-sum rule could never fix a sign
    assert float(rec.coords[batch == 0].sum(0).abs().max()) < 1e-12
    handed = tinv_coordinates(pos, batch, handed=True)
    assert torch.allclose(torch.linalg.det(handed.basis), torch.ones(2, dtype=F64))


def test_float32_input_computes_in_float64():
    pos, batch = two_clouds(torch.float32)
    rec = tinv_coordinates(pos, batch)
    ref = tinv_coordinates(pos.double(), batch)
    assert rec.coords.dtype == torch.float32 and float((rec.coords.double() - ref.coords).abs().max()) < 1e-6


def test_extreme_scales_give_the_same_coordinates():
    pos = cloud(20)
    ref = tinv_coordinates(pos).coords
    for s in (2.0**-500, 2.0**500):  # exact power-of-two rescaling: bit for bit
        assert torch.equal(tinv_coordinates(pos * s).coords, ref)
    for s in (1e-150, 1e150):
        assert torch.allclose(tinv_coordinates(pos * s).coords, ref, atol=1e-12)


def test_forward_is_vectorised_over_the_batch(monkeypatch):
    """The covariance route never calls the per-cloud MDS loop or torch.linalg.eigh."""
    called = []
    monkeypatch.setattr(tinv_mod, "_mds_eigen", lambda *a: called.append(1))
    monkeypatch.setattr(torch.linalg, "eigh", lambda *a, **k: called.append(1))
    pos = torch.randn(64 * 50, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * torch.tensor([3.0, 2, 1])
    rec = tinv_coordinates(pos, torch.arange(64).repeat_interleave(50), degeneracy="flag")
    assert rec.coords.shape == (3200, 3) and not called


# ------------------------------------------------------------------ degeneracy
SYMMETRIC = {"cube": cube, "cylinder": cylinder, "sphere": sphere}


@pytest.mark.parametrize("shape", sorted(SYMMETRIC))
def test_symmetric_clouds_are_flagged_with_every_policy(shape):
    pos = SYMMETRIC[shape]() * 2.0 + 1.0
    with pytest.raises(ValueError, match=r"^pos: degenerate TinvNN coordinates .*samples \[0\]"):
        tinv_coordinates(pos, degeneracy="raise")
    with pytest.warns(RuntimeWarning, match=r"pos: degenerate TinvNN coordinates") as caught:
        tinv_coordinates(pos, degeneracy="warn")
    assert caught[0].filename == __file__  # attributed to the caller
    with pytest.warns(RuntimeWarning, match=r"pos: degenerate TinvNN coordinates") as caught:
        TinvRepresentation()(pos)
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = tinv_coordinates(torch.cat([pos, cloud(20)]), torch.tensor([0] * len(pos) + [1] * 20), degeneracy="flag")
    assert rec.degenerate.tolist() == [True, False]
    # cube and sphere tie all eigenvalues, a cylinder two; all are centrally symmetric: no third moment
    assert float(rec.gap[0]) < 1e-4 or shape == "cylinder"
    assert float(rec.sign_margin[0].max()) < 1e-4


def test_sign_ambiguity_alone_is_flagged():
    x = cloud(15)
    x = x - x.mean(0)
    pos = torch.cat([x, -x])  # centrally symmetric, distinct eigenvalues
    rec = tinv_coordinates(pos, degeneracy="flag")
    assert bool(rec.degenerate[0]) and float(rec.gap[0]) > 1e-2 and float(rec.sign_margin[0].max()) < 1e-12


def test_policy_names_are_those_of_frames():
    from geodl.nn.frame_averaging import _frames

    assert tinv_mod._POLICIES == _frames._POLICIES == ("warn", "raise", "flag", "augment")
    with pytest.raises(ValueError, match=r"^degeneracy: expected one of \['warn', 'raise', 'flag', 'augment'\]"):
        tinv_coordinates(cloud(10), degeneracy="ignore")


@pytest.mark.parametrize("shape", sorted(SYMMETRIC))
def test_augment_is_invariant_in_expectation(shape):
    pos = SYMMETRIC[shape]()
    torch.manual_seed(0)
    backbone = PointNet(0, 2, hidden_channels=(8, 16), head_channels=(8,)).double()
    g = torch.Generator().manual_seed(5)
    Qs = [torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=F64))[0] for _ in range(3)]

    def error(samples):
        errs = []
        for seed, Q in enumerate(Qs):
            net = TinvNN(backbone, degeneracy="augment", augment_samples=samples,
                         generator=torch.Generator().manual_seed(seed))
            with torch.no_grad():
                errs.append(float((net(pos=pos) - net(pos=pos @ Q.T + 0.5)).abs().max()))
        return sum(errs) / len(errs)

    e1, e64 = error(1), error(64)
    assert e64 < 0.5 * e1, (e1, e64)
    with torch.no_grad():
        plain = TinvNN(backbone, degeneracy="flag")
        e_plain = max(float((plain(pos=pos) - plain(pos=pos @ Q.T)).abs().max()) for Q in Qs)
    assert e64 < e_plain


def test_augment_leaves_well_defined_clouds_alone():
    pos, batch = two_clouds()
    sym = sphere(1)
    torch.manual_seed(0)
    backbone = PointNet(0, 2, hidden_channels=(8,), head_channels=()).double()
    both = torch.cat([pos, sym])
    b2 = torch.cat([batch, torch.full((len(sym),), 2)])
    aug = TinvNN(backbone, degeneracy="augment", generator=torch.Generator().manual_seed(0))
    flag = TinvNN(backbone, degeneracy="flag")
    out, mask = aug(pos=both, batch=b2, return_mask=True)
    assert mask.tolist() == [False, False, True]
    assert torch.allclose(out[:2], flag(pos=both, batch=b2)[:2], atol=1e-14)
    node = TinvNN(PointNet(0, 2, hidden_channels=(8,), head_channels=(), level="node").double(), level="node",
                  degeneracy="augment", generator=torch.Generator().manual_seed(0))
    assert node(pos=both, batch=b2).shape == (len(both), 2)


# ------------------------------------------------------------------ bad and empty inputs
@pytest.mark.parametrize("pos, batch, match", [
    (torch.tensor([[0.0, 1, 2], [float("nan"), 0, 0], [1, 1, 1]]), None, r"^pos: contains NaN"),
    (torch.randn(2, 3), None, r"^pos: clouds \[0\] have fewer than 3 points"),
    (torch.randn(7, 3), torch.tensor([0, 0, 0, 0, 0, 1, 1]), r"^batch: clouds \[1\] have fewer than 3 points"),
    (torch.randn(5, 1), None, r"^pos: expected shape \(N, d\) with d >= 2"),
    (torch.randn(5), None, r"^pos: expected a tensor with 2 dimensions"),
    (torch.randn(5, 3), torch.zeros(4, dtype=torch.long), r"^batch: expected shape \(5,\)"),
    (torch.randn(5, 3), torch.tensor([0, 0, 0, -1, 0]), r"^batch: expected non-negative ids"),
    (torch.zeros(0, 3), None, r"^pos: empty point cloud"),
])
def test_bad_input_names_the_argument(pos, batch, match):
    with pytest.raises(ValueError, match=match):
        tinv_coordinates(pos, batch)


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"^pos: expected a floating-point tensor"):
        tinv_coordinates(torch.ones(5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^method: expected one of"):
        tinv_coordinates(cloud(5), method="svd")
    with pytest.raises(TypeError, match=r"^handed: expected a bool"):
        tinv_coordinates(cloud(5), handed=1)
    with pytest.raises(ValueError, match=r"^num_graphs: 1 is smaller than batch.max\(\) \+ 1 = 2"):
        tinv_coordinates(cloud(6), torch.tensor([0, 0, 0, 1, 1, 1]), num_graphs=1)
    with pytest.raises(ValueError, match=r"^backbone: expected 2 per-graph output rows"):
        TinvNN(lambda x, pos, batch: pos[:1], degeneracy="flag")(pos=cloud(6), batch=torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"^vel: no kind declared"):
        TinvNN(PointNet(3, 1), inputs={"pos": "points"})(pos=cloud(6), vel=cloud(6))
    bad = cloud(6)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^pos: contains NaN"):
        TinvNN(PointNet())(pos=bad.float())
    with pytest.raises(ValueError, match=r"^batch: clouds \[1\] have fewer than 3 points"):
        TinvNN(PointNet())(pos=cloud(6).float(), batch=torch.tensor([0, 0, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"^pos: required"):
        TinvNN(PointNet())(x=torch.ones(3, 1))
    with pytest.raises(ValueError, match=r"^output: source='graph'"):
        TinvNN(PointNet(), source="graph", output="vectors")


def test_empty_graphs_like_frame_averaging():
    pos, batch = two_clouds()
    b3 = torch.where(batch == 1, 2, 0)  # graph 1 is empty
    rec = tinv_coordinates(pos, b3, num_graphs=3)
    assert rec.degenerate.tolist() == [False, False, False] and rec.basis.shape == (3, 3, 3)
    assert torch.allclose(rec.coords, tinv_coordinates(pos, batch).coords)
    torch.manual_seed(0)
    net = TinvNN(PointNet(0, 2, hidden_channels=(8,), head_channels=()).double())
    out = net(pos=pos, batch=b3, num_graphs=3)
    assert out.shape == (3, 2) and bool(torch.isfinite(out).all())
    none = net(pos=torch.zeros(0, 3, dtype=F64), batch=torch.zeros(0, dtype=torch.long), num_graphs=2)
    assert none.shape == (2, 2) and bool(torch.isfinite(none).all())
    with pytest.raises(ValueError, match=r"^batch: clouds \[1\] have fewer than 3 points"):
        tinv_coordinates(pos, b3)  # without num_graphs an unused id is an error, as for frames


def test_sizes_are_checked_before_allocation(monkeypatch):
    from geodl import _checks

    monkeypatch.setattr(_checks, "_available_bytes", lambda device: 2**31)  # a 2 GiB machine
    pos = torch.zeros(20000, 3, dtype=F64)
    pos[:, 0] = torch.arange(20000, dtype=F64)
    with pytest.raises(ValueError, match=r"^pos: a cloud of 20000 points \(method='mds' builds its 20000 x 20000 Gram"):
        tinv_coordinates(pos, method="mds")
    with pytest.raises(ValueError, match=r"^num_graphs: 10000000000 asks for"):
        tinv_coordinates(cloud(5), num_graphs=10**10)
