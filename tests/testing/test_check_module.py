"""geodl.testing.check_module: the battery passes on good models, names the broken item on each broken
example, leaves the module and the RNG as they were, and takes PyG inputs and explicit kinds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geodl.groups import Symmetry
from geodl.testing import CHECKS, ModuleReport, check_module
from geodl.testing import examples as E

_G = torch.Generator().manual_seed(0)
POS = torch.randn(18, 3, generator=_G)
BATCH = torch.tensor([0] * 5 + [1] * 6 + [2] * 7)


def _inputs(model):
    inp = {"pos": POS}
    if "batch" in model.symmetry.in_kinds:
        inp["batch"] = BATCH
    return inp


@pytest.mark.parametrize("factory", ["invariant_model", "equivariant_model"])
def test_good_models_pass_every_item(factory):
    model = getattr(E, factory)()
    report = check_module(model, _inputs(model))
    assert isinstance(report, ModuleReport)
    assert report.passed and report.failed == []
    assert list(report.items) == list(CHECKS)
    assert all(status == "passed" for status, _ in report.items.values())  # batching is tested per graph
    assert "batching" in str(report) and "PASSED" in str(report)


# factory -> the one item it breaks (batching is skipped for models with one scalar and no batch_arg)
BROKEN = {
    "noninvariant_model": "equivariance",
    "chiral_model": "equivariance",
    "icosahedral_model": "equivariance",
    "batch_mixing_model": "batching",
    "unsaved_state_model": "state_dict",
    "stateful_forward_model": "side_effects",
    "random_draw_model": "side_effects",
    "nan_gradient_model": "gradients",
    "compile_break_model": "compile",
}


@pytest.mark.parametrize("factory", sorted(BROKEN))
def test_each_broken_model_fails_exactly_its_item(factory):
    model = getattr(E, factory)()
    report = check_module(model, _inputs(model), raise_on_fail=False)
    assert report.failed == [BROKEN[factory]], str(report)
    for name, (status, _) in report.items.items():
        if name != BROKEN[factory]:
            assert status in ("passed", "skipped"), (name, str(report))
    with pytest.raises(AssertionError, match=f"failed '{BROKEN[factory]}'"):
        check_module(model, _inputs(model))


def test_batching_compares_rows_without_a_batch_arg_and_skips_aggregates():
    rows = check_module(nn.Linear(3, 2), {"input": POS}, group="perm", in_kinds={"input": "node:scalar"},
                        out_kinds="node:scalar")
    assert rows.items["batching"][0] == "passed" and "rows" in rows.items["batching"][1]
    nonperm = check_module(E.nonperm_model(), {"pos": POS}, raise_on_fail=False)  # a running sum couples rows
    assert nonperm.items["batching"][0] == "failed"
    agg = check_module(E.noninvariant_model(), {"pos": POS}, checks=("batching",))
    assert agg.items["batching"][0] == "skipped"


class _NormNet(nn.Module):
    """A per-row network with BatchNorm and dropout: permutation-equivariant over rows."""

    symmetry = Symmetry("perm", {"x": "node:scalar"}, "node:scalar")

    def __init__(self):
        super().__init__()
        self.lin, self.bn, self.drop = nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.lin(x)))


def test_side_effects_module_in_train_mode_is_left_unchanged():
    torch.manual_seed(0)
    model = _NormNet()
    model(POS)  # non-trivial running statistics
    assert model.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    report = check_module(model, {"x": POS})
    assert report.passed, str(report)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert torch.equal(model.bn.running_mean, before["bn.running_mean"])
    assert int(model.bn.num_batches_tracked) == int(before["bn.num_batches_tracked"])
    assert torch.equal(torch.get_rng_state(), rng)
    assert "training-mode forward" in report.items["side_effects"][1]


def test_side_effects_eval_mode_flag_kept():
    model = _NormNet().eval()
    check_module(model, {"x": POS}, checks=("batching", "side_effects"))
    assert not model.training and not model.bn.training


def test_side_effects_names_the_changed_buffer():
    report = check_module(E.stateful_forward_model(), _inputs(E.stateful_forward_model()),
                          checks=("side_effects",), raise_on_fail=False)
    assert "calls" in report.items["side_effects"][1]
    rng = check_module(E.random_draw_model(), {"pos": POS}, checks=("side_effects",), raise_on_fail=False)
    assert "global RNG" in rng.items["side_effects"][1]


class _Scaled(nn.Module):
    """A linear map times a constant kept in a non-persistent buffer (rebuilt by the constructor)."""

    symmetry = Symmetry("perm", {"x": "node:scalar"}, "node:scalar")

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("scale", torch.tensor(3.0), persistent=False)

    def forward(self, x):
        return self.lin(x) * self.scale


def test_state_dict_keeps_non_persistent_constants_and_catches_plain_attributes():
    assert check_module(_Scaled(), {"x": POS}, checks=("state_dict",)).passed
    report = check_module(E.unsaved_state_model(), {"pos": POS}, checks=("state_dict",), raise_on_fail=False)
    assert "plain tensor attribute" in report.items["state_dict"][1]


# ------------------------------------------------------------------ PyG inputs
class _DistanceConv(nn.Module):
    """A small E(3)-invariant message-passing model over ``edge_index`` and ``pos`` (per-graph energy)."""

    symmetry = Symmetry("E3+perm", {"x": "node:scalar", "pos": "node:points", "edge_index": "edge_index",
                                    "batch": "batch"}, ("node:scalar", "scalar"), batch_arg="batch")

    def __init__(self):
        super().__init__()
        from torch_geometric.nn import MessagePassing

        class Conv(MessagePassing):
            def __init__(self):
                super().__init__(aggr="add")
                self.mlp = nn.Sequential(nn.Linear(3, 8), nn.SiLU(), nn.Linear(8, 2))

            def forward(self, x, pos, edge_index):
                return self.propagate(edge_index, x=x, pos=pos)

            def message(self, x_i, x_j, pos_i, pos_j):
                d2 = ((pos_i - pos_j) ** 2).sum(-1, keepdim=True)
                return self.mlp(torch.cat([x_i, x_j, d2], -1))

        self.conv = Conv()

    def forward(self, x, pos, edge_index, batch):
        h = self.conv(x, pos, edge_index)
        n_graphs = int(batch.max()) + 1
        return h, h.new_zeros(n_graphs, 2).index_add_(0, batch, h)


def _pyg_batch():
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(1)
    graphs = []
    for n in (5, 6, 7):
        src = torch.arange(n).repeat_interleave(n)
        dst = torch.arange(n).repeat(n)
        keep = (src != dst) & (torch.rand(n * n, generator=g) < 0.6)
        graphs.append(Data(x=torch.randn(n, 1, generator=g), pos=torch.randn(n, 3, generator=g),
                           edge_index=torch.stack([src[keep], dst[keep]])))
    return Batch.from_data_list(graphs)


def test_pyg_batch_input_runs_every_item():
    torch.manual_seed(0)
    batch = _pyg_batch()
    report = check_module(_DistanceConv(), batch)
    assert report.passed and all(s == "passed" for s, _ in report.items.values()), str(report)
    assert "3 graphs" in report.items["batching"][1]


def test_pyg_data_input_and_edges_that_cross_graphs_fail_batching():
    from torch_geometric.data import Data

    torch.manual_seed(0)
    batch = _pyg_batch()
    cross = torch.tensor([[0], [batch.num_nodes - 1]])  # an edge from graph 0 to graph 2
    data = Data(x=batch.x, pos=batch.pos, edge_index=torch.cat([batch.edge_index, cross], 1), batch=batch.batch)
    report = check_module(_DistanceConv(), data, raise_on_fail=False)
    assert report.failed == ["batching"], str(report)


def test_user_module_with_explicit_kinds_and_no_declaration():
    class Energy(nn.Module):  # no symmetry attribute
        def forward(self, pos):
            return torch.pdist(pos).sum()

    with pytest.raises(TypeError, match="declares no symmetry"):
        check_module(Energy(), {"pos": POS})
    report = check_module(Energy(), {"pos": POS}, group="E3+perm", in_kinds={"pos": "node:points"},
                          out_kinds="scalar")
    assert report.passed
    positional = check_module(Energy(), (POS,), group="E3+perm", in_kinds=("node:points",), out_kinds="scalar",
                              checks=("equivariance", "state_dict"))
    assert list(positional.items) == ["equivariance", "state_dict"] and positional.passed
    # an explicit group overrides the declaration: reflections break the chiral model's declared E3
    assert check_module(E.chiral_model(), {"pos": POS}, group="SE3+perm", checks=("equivariance",)).passed


def test_bad_arguments():
    model = E.invariant_model()
    with pytest.raises(ValueError, match="checks: unknown check"):
        check_module(model, {"pos": POS}, checks=("equivariance", "speed"))
    with pytest.raises(TypeError, match="module"):
        check_module(lambda pos: pos, {"pos": POS})
    with pytest.raises(ValueError, match="inputs: missing \\['pos'\\]"):
        check_module(model, {"x": POS})
    with pytest.raises(ValueError, match="pos"):  # (N, 2) does not fit node:points
        check_module(model, {"pos": POS[:, :2]})
    with pytest.raises(ValueError, match="rows along dim 0"):
        check_module(model, {"pos": POS, "batch": BATCH[:-1]})
    with pytest.raises(TypeError, match="in_kinds"):
        check_module(model, (POS,))
    with pytest.raises(TypeError, match="inputs"):
        check_module(model, POS)
    with pytest.raises(TypeError, match="dtype"):
        check_module(model, {"pos": POS}, dtype=torch.long)


def test_module_is_not_modified_and_dtype_is_kept():
    model = E.unsaved_state_model()
    check_module(model, {"pos": POS}, raise_on_fail=False)
    assert model.weight.dtype == torch.float32 and model.scale.dtype == torch.float32
    assert model.scale.item() == 2.0 and model.weight.detach().item() == 0.5
