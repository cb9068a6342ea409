"""Soft-equivariance layers: hard layers are exactly equivariant (check_module), free ones are not,
RPP = equivariant path + free path, tensor products and gates, bad input names the argument."""

from __future__ import annotations

import pytest
import torch

from geodl.nn.soft_equivariance import (GatedNonlinearity, Rep, RepLinear, RepMLP, RepTensorProduct, RPPLinear,
                                        candidate_group, equivariant_basis, gated_rep)
from geodl.nn.soft_equivariance._layers import _tensor_features
from geodl.testing import check_module

F64 = torch.float64
REP_A = "2xscalars+vectors+pseudovectors+tensor2"
REP_B = "scalars+2xvectors+sh2"


def _x(rep, n=6, seed=0):
    return torch.randn(n, Rep(rep).dim, dtype=F64, generator=torch.Generator().manual_seed(seed))


def _err(module, rep_in, rep_out, group, x, seed=1):
    g = candidate_group(group).sample(generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((module(Rep(rep_in).act(g, x)) - Rep(rep_out).act(g, module(x))).abs().max())


@pytest.mark.parametrize("group", ["O3", "SO3", "O2z", "O3+scale"])
def test_hard_linear_passes_check_module(group):
    torch.manual_seed(0)
    m = RepLinear(REP_A, REP_B, group=group).double()
    with torch.no_grad():
        m.bias_theta.normal_()
    rep = check_module(m, {"x": _x(REP_A)}, checks=("equivariance", "batching", "state_dict", "gradients"),
                       atol=1e-6)
    assert rep.passed
    assert m.symmetry.group == candidate_group(group).geodl_group().name
    # its weight is in the span of the basis, its bias invariant
    W, b = m.effective_weight()
    B = equivariant_basis(REP_A, REP_B, group)
    assert torch.allclose(B.project(W), W, atol=1e-12) and torch.allclose(B.project_bias(b), b, atol=1e-12)


def test_free_linear_is_not_equivariant_and_declares_rows_only():
    torch.manual_seed(0)
    m = RepLinear(REP_A, REP_B).double()
    assert m.symmetry.group == "perm" and m.group is None
    assert _err(m, REP_A, REP_B, "O3", _x(REP_A)) > 1e-2
    assert check_module(m, {"x": _x(REP_A)}, checks=("equivariance", "batching", "state_dict")).passed
    # the declared check can fail: claim O(3) for the free layer
    from geodl.groups import Symmetry

    m.symmetry = Symmetry("O3", {"x": Rep(REP_A).kind}, Rep(REP_B).kind)
    with pytest.raises(AssertionError):
        check_module(m, {"x": _x(REP_A)}, checks=("equivariance",), atol=1e-6)


def test_hard_linear_init_scale_matches_nn_linear():
    torch.manual_seed(0)
    norms = [float(RepLinear("8xvectors+8xscalars", "8xvectors+8xscalars", group="O3").effective_weight()[0]
                   .pow(2).sum()) for _ in range(200)]
    expected = 32 / 3  # E‖W‖² of nn.Linear(32, 32)'s uniform initialisation
    assert abs(sum(norms) / len(norms) / expected - 1) < 0.15


def test_rpp_linear_is_equivariant_path_plus_free_path():
    torch.manual_seed(0)
    m = RPPLinear("2xvectors", "vectors+scalars", group="O3").double()
    x = _x("2xvectors")
    assert float(m.prior_penalty()) == 0.0 and _err(m, "2xvectors", "vectors+scalars", "O3", x) < 1e-12
    with torch.no_grad():
        m.free_weight.normal_()
    W, b = m.effective_weight()
    We, be = m.eq.effective_weight()
    assert torch.equal(W, We + m.free_weight) and torch.equal(b, be + m.free_bias)
    assert float(m.prior_penalty()) == pytest.approx(0.5 * float((m.free_weight ** 2).sum()))
    assert _err(m, "2xvectors", "vectors+scalars", "O3", x) > 1e-3
    assert float(m.equivariance_penalty("O3")) > 0
    assert check_module(m, {"x": x}, checks=("batching", "state_dict", "gradients")).passed
    with pytest.raises(ValueError, match="group"):
        RPPLinear("vectors", "vectors", group=None)


def test_tensor_features_layout_is_rep_tensor():
    rep = Rep("2xscalars+vectors+tensor2")
    x = _x(rep)
    t = _tensor_features(rep, x)
    prod = rep.tensor(rep)
    assert t.shape == (6, prod.dim)
    g = candidate_group("O3").sample(generator=torch.Generator().manual_seed(3))
    # acting on the factors = acting on the product (the layout is the one Rep.tensor describes)
    assert torch.allclose(_tensor_features(rep, rep.act(g, x)), prod.act(g, t), atol=1e-10)
    # one-block reps: kron itself
    v = _x("vectors")
    assert torch.allclose(_tensor_features(Rep("vectors"), v), (v[:, :, None] * v[:, None, :]).flatten(1))


@pytest.mark.parametrize("group", ["O3", "O2z"])
def test_tensor_product_and_gate_pass_check_module(group):
    torch.manual_seed(0)
    tp = RepTensorProduct("2xscalars+2xvectors", "scalars+tensor2+vectors", group=group, hidden="scalars+2xvectors")
    tp = tp.double()
    assert check_module(tp, {"x": _x("2xscalars+2xvectors")}, checks=("equivariance", "batching", "gradients"),
                        atol=1e-6).passed
    # vectors -> tensor2 needs the product: no linear O(3) map exists
    assert equivariant_basis("2xvectors", "tensor2", "O3").rank == 0 and tp.post.basis.rank > 0
    gate = GatedNonlinearity("2xscalars+vectors+tensor2")
    assert gate.n_gates == 2 and gate.rep_in == gated_rep("2xscalars+vectors+tensor2")
    assert check_module(gate, {"x": _x(gated_rep("2xscalars+vectors+tensor2"))},
                        checks=("equivariance", "batching", "gradients")).passed


def test_gate_values():
    gate = GatedNonlinearity("scalars+vectors")
    x = torch.tensor([[2.0, 1.0, -2.0, 3.0, 0.5]])
    y = gate(x)
    assert torch.allclose(y[0, 0], torch.nn.functional.silu(torch.tensor(2.0)))
    assert torch.allclose(y[0, 1:], x[0, 1:4] * torch.sigmoid(torch.tensor(0.5)))


@pytest.mark.parametrize("group", ["O3", "O2z"])
def test_equivariant_mlp_is_exact_and_the_free_one_is_not(group):
    torch.manual_seed(0)
    rin, rout = "5xscalars+5xpoints", "tensor2"
    x = _x(rin, 8)
    hard = RepMLP(rin, rout, hidden="4xscalars+2xvectors+tensor2", num_layers=2, group=group,
                  path="equivariant").double()
    assert _err(hard, rin, rout, group, x) < 1e-10 * max(1.0, float(hard(x).abs().max()))
    if group == "O3":
        assert check_module(hard, {"x": x}, checks=("equivariance", "batching", "state_dict", "gradients"),
                            atol=1e-6).passed
    free = RepMLP(rin, rout, hidden="4xscalars+2xvectors+tensor2", num_layers=2).double()
    assert _err(free, rin, rout, group, x) > 1e-4
    rpp = RepMLP(rin, rout, hidden="4xscalars+2xvectors+tensor2", num_layers=2, group=group, path="rpp").double()
    assert _err(rpp, rin, rout, group, x) < 1e-10 * max(1.0, float(rpp(x).abs().max()))  # free paths start at 0
    assert float(rpp.prior_penalty()) == 0.0 and float(hard.prior_penalty()) == 0.0


def test_bad_input_names_the_argument():
    m = RepLinear("2xvectors", "vectors", group="O3")
    with pytest.raises(ValueError, match="x"):
        m(torch.zeros(4, 5))  # 2xvectors has 6 features
    with pytest.raises(ValueError, match="rep_in"):
        RepLinear("3xfoo", "vectors")
    with pytest.raises(ValueError, match="rep_out"):
        RepLinear("vectors", "2xvectors+")
    with pytest.raises(ValueError, match="group"):
        RepLinear("vectors", "vectors", group="O4")
    with pytest.raises(ValueError, match="group"):
        RepLinear("vectors", "vectors", group="SO3+T3")
    with pytest.raises(ValueError, match="gain"):
        RepLinear("vectors", "vectors", gain=-1.0)
    with pytest.raises(ValueError, match="rep_in"):
        RepLinear("100000xvectors", "100000xvectors")  # 9e10 weights: refused before allocating
    with pytest.raises(ValueError, match="hidden"):
        RepTensorProduct("vectors", "tensor2", hidden="points")
    with pytest.raises(ValueError, match="hidden"):
        RepTensorProduct("vectors", "tensor2", hidden="100xvectors")
    with pytest.raises(ValueError, match="path"):
        RepMLP("vectors", "vectors", path="hard")
    with pytest.raises(ValueError, match="group"):
        RepMLP("vectors", "vectors", path="equivariant")
    with pytest.raises(ValueError, match="num_layers"):
        RepMLP("vectors", "vectors", num_layers=0)
    with pytest.raises(TypeError, match="x"):
        m(torch.zeros(4, 6, dtype=torch.int64))


def test_empty_batches_and_no_nan():
    torch.manual_seed(0)
    net = RepMLP("5xscalars+5xpoints", "tensor2", hidden="4xscalars+2xvectors+tensor2", num_layers=2, group="O3",
                 path="equivariant")
    assert net(torch.zeros(0, 20)).shape == (0, 9)
    y = net(torch.randn(16, 20) * 1e3)
    assert torch.isfinite(y).all()


def test_free_mlp_still_validates_group():
    with pytest.raises(ValueError, match="group"):
        RepMLP("vectors", "vectors", path="free", group="O4")
    assert RepMLP("vectors", "vectors", path="free", group="O3").group is None
