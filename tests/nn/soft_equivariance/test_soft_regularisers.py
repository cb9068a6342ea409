"""Regularisers, strength tuning and the symmetry report: exact zeros on equivariant models, positive on
broken ones, subgroup order, the tuning formula, save/load, bad input, no NaN."""

from __future__ import annotations

import io
import math

import pytest
import torch

from geodl.nn.soft_equivariance import (Rep, RepLinear, RepMLP, StrengthTuner, candidate_group, mc_regulariser,
                                        projection_regulariser, symmetry_report)

F64 = torch.float64
RIN, ROUT, HID = "5xscalars+5xpoints", "tensor2", "4xscalars+2xvectors+tensor2"


def _x(n=16, seed=0):
    return torch.randn(n, 20, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _net(path="free", group="O3", seed=0):
    torch.manual_seed(seed)
    return RepMLP(RIN, ROUT, HID, num_layers=2, group=group, path=path).double()


@pytest.mark.parametrize("group", ["O3", "SO3", "O2z", "SO2x"])
def test_mc_regulariser_zero_on_equivariant_model_positive_on_broken(group):
    x = _x()
    hard = _net("equivariant", group)
    r = float(mc_regulariser(hard, x, group, n_samples=8, generator=1))
    assert 0 <= r <= 1e-10
    free = _net("free")
    assert float(mc_regulariser(free, x, group, n_samples=8, generator=1)) > 1e-6
    # the O(3) model is also exactly equivariant to every subgroup
    o3 = _net("equivariant", "O3")
    assert float(mc_regulariser(o3, x, group, n_samples=4, generator=2)) <= 1e-10


def test_mc_regulariser_with_translations_and_explicit_kinds():
    # an E(3)-equivariant map of points: the centroid of 4 points, as a point
    class Centroid(torch.nn.Module):
        def forward(self, x):
            return x.unflatten(-1, (4, 3)).mean(-2)

    x = torch.randn(8, 12, dtype=F64)
    assert float(mc_regulariser(Centroid(), x, "O3+T3", rep_in="4xpoints", rep_out="points", n_samples=4,
                                generator=0)) <= 1e-20
    # the same map declared to output a vector (not translated) breaks T3
    assert float(mc_regulariser(Centroid(), x, "T3", rep_in="4xpoints", rep_out="vectors", generator=0)) > 1e-3
    # geodl kinds work too ("node:points" for per-node positions)
    assert float(mc_regulariser(lambda p: p - p.mean(0), torch.randn(10, 3, dtype=F64), "O3+T3",
                                rep_in="node:points", rep_out="node:vectors", generator=0)) <= 1e-20


def test_projection_regulariser_zero_hard_positive_free_and_subgroup_order():
    assert float(projection_regulariser(_net("equivariant", "O3"), "O3")) <= 1e-20
    free = _net("free", seed=3)
    r = {G: float(projection_regulariser(free, G)) for G in ("O3", "SO3", "O2z", "SO2z", "O2x")}
    assert all(v > 0 for v in r.values())
    # H ⊂ G  =>  R_H <= R_G for any weights
    assert r["SO2z"] <= r["O2z"] <= r["O3"] and r["SO3"] <= r["O3"] and r["SO2z"] <= r["SO3"]
    # it is the sum of the layers' penalties, counting an RPP map once (W_eq + W_free)
    rpp = _net("rpp", "O3")
    with torch.no_grad():
        for m in rpp.modules():
            if hasattr(m, "free_weight"):
                m.free_weight.normal_(generator=torch.Generator().manual_seed(0))
    from geodl.nn.soft_equivariance import RPPLinear

    layers = [m for m in rpp.modules() if isinstance(m, RPPLinear)]
    expected = sum(float(m.equivariance_penalty("O3")) for m in layers)
    assert float(projection_regulariser(rpp, "O3")) == pytest.approx(expected, rel=1e-12) and expected > 0


def test_regularisers_are_differentiable_and_reduce_the_penalty():
    free = _net("free", seed=1)
    opt = torch.optim.SGD(free.parameters(), lr=0.5)
    before = float(projection_regulariser(free, "O2z"))
    for _ in range(5):
        opt.zero_grad()
        projection_regulariser(free, "O2z").backward()
        opt.step()
    assert float(projection_regulariser(free, "O2z")) < 0.5 * before
    m = RepLinear("3xvectors", "vectors").double()
    loss = mc_regulariser(m, torch.randn(8, 9, dtype=F64), "O3", generator=0)
    loss.backward()
    assert m.weight.grad is not None and torch.isfinite(m.weight.grad).all() and m.weight.grad.abs().sum() > 0


def test_regularisers_never_nan_for_finite_weights():
    m = RepLinear("3xvectors", "vectors").double()
    with torch.no_grad():
        m.weight.fill_(1e300)
        m.bias.fill_(-1e300)
    r = projection_regulariser(m, "O3")
    assert not math.isnan(float(r)) and float(r) > 0
    r = mc_regulariser(m, torch.randn(4, 9, dtype=F64) * 1e10, "O3", generator=0)
    assert not math.isnan(float(r)) and float(r) == math.inf
    with torch.no_grad():
        m.weight.zero_()
        m.bias.zero_()
    assert float(projection_regulariser(m, "O3")) == 0.0
    assert float(mc_regulariser(m, torch.randn(4, 9, dtype=F64), "O3", generator=0)) == 0.0


def test_tuner_start_formula_and_hook():
    free = _net("free", seed=2)
    t = StrengthTuner(["O3", "O2x", "O2z"], initial=2.0, power=2.0, every=3)
    assert t.strengths == {"O3": 2.0, "O2x": 0.0, "O2z": 0.0}  # only the largest group at first
    assert StrengthTuner(["O3", "O2z"], start="all").strengths == {"O3": 1.0, "O2z": 1.0}
    R = torch.stack([projection_regulariser(free, g) for g in ("O3", "O2x", "O2z")]).detach()
    for _ in range(2):
        t.penalty(free)
    assert float(t.count) == 2 and torch.allclose(t.running, 2 * R)
    t.epoch_hook(1)
    t.epoch_hook(2)
    assert int(t.adjustments) == 0  # adjusts after every 3rd epoch only
    t.epoch_hook(3)
    assert int(t.adjustments) == 1 and float(t.count) == 0
    expected = {g: 2.0 * (float(R.min()) / float(R[i])) ** 2 for i, g in enumerate(("O3", "O2x", "O2z"))}
    for g, v in t.strengths.items():
        assert v == pytest.approx(expected[g], rel=1e-12)
    assert max(t.strengths.values()) == pytest.approx(2.0)
    # eval mode does not accumulate; an adjustment without new values changes nothing
    t.eval()
    t.penalty(free)
    assert float(t.count) == 0
    before = t.strengths
    t.adjust()
    assert t.strengths == before
    # the loss term is Σ λ_j R_j
    t.train()
    pen = t.penalty(free)
    assert float(pen) == pytest.approx(sum(expected[g] * float(R[i]) for i, g in enumerate(expected)), rel=1e-10)


def test_tuner_initialise_starts_at_the_largest_group():
    free = _net("free", seed=4)
    t = StrengthTuner(["O3", "O2z"])
    assert float(projection_regulariser(free, "O3")) > 1e-3
    assert t.initialise(free) > 0
    assert float(projection_regulariser(free, "O3")) < 1e-20
    with pytest.raises(ValueError, match="groups"):
        StrengthTuner(["O2x", "O2z"]).initialise(free)  # two largest groups: which one?
    with pytest.raises(ValueError, match="model"):
        StrengthTuner(["O3"]).initialise(_net("equivariant"))


def test_tuned_model_save_load_identical():
    torch.manual_seed(0)

    class Soft(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = RepMLP(RIN, ROUT, HID, num_layers=2)
            self.tuner = StrengthTuner(["O3", "O2x", "O2z"], every=1, power=1.5)

    a = Soft()
    x, y = torch.randn(64, 20), torch.randn(64, 9)
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    for epoch in range(1, 4):
        loss = ((a.net(x) - y) ** 2).mean() + a.tuner.penalty(a.net).float()
        opt.zero_grad()
        loss.backward()
        opt.step()
        a.tuner.epoch_hook(epoch)
    assert int(a.tuner.adjustments) == 3 and len(set(a.tuner.strengths.values())) == 3
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)
    b = Soft()
    assert b.tuner.strengths != a.tuner.strengths
    b.load_state_dict(torch.load(buf, weights_only=True))
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a.net(x), b.net(x))
    assert torch.equal(a.tuner.strength, b.tuner.strength) and a.tuner.strengths == b.tuner.strengths
    assert int(b.tuner.adjustments) == 3


def test_symmetry_report_rows():
    hard = _net("equivariant", "O2z")
    t = StrengthTuner(["O3", "O2z"])
    rows = symmetry_report(hard, _x(32), ["O3", "O2z", "O2z+T3"], tuner=t, n_samples=4)
    by = {r["group"]: r for r in rows}
    assert by["O2z"]["equivariance_error"] < 1e-12 and by["O3"]["equivariance_error"] > 1e-4
    assert by["O2z"]["regulariser"] < 1e-20 and by["O3"]["regulariser"] > 0
    assert by["O3"]["strength"] == 1.0 and by["O2z"]["strength"] == 0.0
    assert by["O2z+T3"]["regulariser"] is None and by["O2z+T3"]["strength"] is None
    assert by["O2z+T3"]["equivariance_error"] > 1e-4  # points are translated, the output tensor is not
    assert hard.training  # restored


def test_bad_input_names_the_argument():
    free = _net("free")
    x = _x()
    with pytest.raises(ValueError, match="group"):
        projection_regulariser(free, "O4")
    with pytest.raises(ValueError, match="group"):
        mc_regulariser(free, x, "SO7")
    with pytest.raises(ValueError, match="group"):
        projection_regulariser(free, "O3+T3")
    with pytest.raises(ValueError, match="model"):
        projection_regulariser(torch.nn.Linear(3, 3), "O3")
    with pytest.raises(ValueError, match="x"):  # the representation does not match the input's shape
        mc_regulariser(free, torch.randn(4, 21, dtype=F64), "O3")
    with pytest.raises(ValueError, match="x"):
        mc_regulariser(free, x, "O3", rep_in="4xpoints")
    with pytest.raises(ValueError, match="rep_in"):
        mc_regulariser(free, x, "O3", rep_in="5xfoo")
    with pytest.raises(ValueError, match="rep_in"):
        mc_regulariser(torch.nn.Linear(20, 9).double(), x, "O3")
    with pytest.raises(ValueError, match="x"):
        mc_regulariser(free, torch.full((4, 20), float("nan"), dtype=F64), "O3")
    with pytest.raises(ValueError, match="n_samples"):
        mc_regulariser(free, x, "O3", n_samples=0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="initial"):
            StrengthTuner(["O3"], initial=bad)
        with pytest.raises(ValueError, match="strength"):
            StrengthTuner(["O3"]).set_strength("O3", bad)
        with pytest.raises(ValueError, match="power"):
            StrengthTuner(["O3"], power=bad)
    with pytest.raises(ValueError, match="groups"):
        StrengthTuner([])
    with pytest.raises(ValueError, match="groups"):
        StrengthTuner(["O3", "o3"])
    with pytest.raises(ValueError, match="groups"):
        StrengthTuner(["O3+T3"])
    with pytest.raises(ValueError, match="group"):
        StrengthTuner(["O3", "O2q"])
    with pytest.raises(ValueError, match="every"):
        StrengthTuner(["O3"], every=0)
    with pytest.raises(ValueError, match="group"):
        StrengthTuner(["O3"]).set_strength("O2z", 1.0)
    with pytest.raises(ValueError, match="groups"):
        symmetry_report(free, x, [])


def test_mc_tuner_on_any_model():
    # method="mc" needs no representation layers: a plain torch model with declared reps
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(9, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    t = StrengthTuner(["O3", "O2z"], method="mc")
    x = torch.randn(32, 9, dtype=F64)
    pen = t.penalty(net, x, rep_in="3xvectors", rep_out="vectors", generator=0)
    assert float(pen) > 0 and float(t.count) == 1
    pen.backward()
    assert net[0].weight.grad is not None
    with pytest.raises(ValueError, match="x"):
        t.penalty(net)
    assert Rep("3xvectors").dim == 9 and candidate_group("O2z").linear


def test_model_with_a_tuner_passes_check_module():
    """A RepMLP with its StrengthTuner as a submodule (as geodl bench inertia builds it): the battery's
    batching, state_dict round trip (the tuned strengths included), gradients and side-effect checks."""
    from geodl.groups import Symmetry
    from geodl.testing import check_module

    class Tuned(torch.nn.Module):
        symmetry = Symmetry("perm", {"x": "node:scalar"}, "node:scalar")

        def __init__(self):
            super().__init__()
            self.net = RepMLP(RIN, ROUT, HID, num_layers=1, group="O3", path="rpp")
            self.tuner = StrengthTuner(["O3", "O2z"], every=1)

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    m = Tuned().double()
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.tuner.penalty(m.net)
    m.tuner.adjust()
    assert m.tuner.strengths["O2z"] == 1.0 and 0 < m.tuner.strengths["O3"] < 1.0
    rep = check_module(m, {"x": _x(8)}, checks=("batching", "state_dict", "gradients", "side_effects"))
    assert rep.passed
    assert "tuner.strength" in m.state_dict()
