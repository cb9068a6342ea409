"""The Monte-Carlo regulariser as a drop-in on a user's PyG model (the docs example, tested)."""

from __future__ import annotations

import pytest
import torch

pyg = pytest.importorskip("torch_geometric")
from torch_geometric.data import Batch, Data  # noqa: E402
from torch_geometric.nn import MessagePassing  # noqa: E402

from geodl.nn.soft_equivariance import StrengthTuner, mc_regulariser, symmetry_report  # noqa: E402

F64 = torch.float64
KINDS = {"pos": "node:points", "x": "node:scalar"}


class Displacement(MessagePassing):
    """A user's E(3)-equivariant layer: per node, the mean of ``(p_j - p_i) · φ(x_i, x_j, |p_j - p_i|²)``.

    With ``broken=True`` a learned fixed direction is added to the messages (not rotation-equivariant).
    """

    def __init__(self, channels=4, broken=False):
        super().__init__(aggr="mean")
        self.phi = torch.nn.Sequential(torch.nn.Linear(2 * channels + 1, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
        self.bias = torch.nn.Parameter(torch.randn(3) * 0.5) if broken else None

    def forward(self, data):
        return self.propagate(data.edge_index, pos=data.pos, x=data.x)

    def message(self, pos_i, pos_j, x_i, x_j):
        d = pos_j - pos_i
        w = self.phi(torch.cat([x_i, x_j, (d * d).sum(-1, keepdim=True)], dim=-1))
        out = d * w
        return out + w * self.bias if self.bias is not None else out


def _graphs(n_graphs=3, n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_graphs):
        pos = torch.randn(n, 3, dtype=F64, generator=g)
        ei = torch.combinations(torch.arange(n), 2).T
        out.append(Data(x=torch.randn(n, 4, dtype=F64, generator=g), pos=pos, edge_index=torch.cat([ei, ei.flip(0)], 1)))
    return Batch.from_data_list(out)


def test_mc_regulariser_on_pyg_model():
    torch.manual_seed(0)
    data = _graphs()
    good = Displacement().double()
    r = mc_regulariser(good, data, "O3+T3", rep_in=KINDS, rep_out="node:vectors", n_samples=4, generator=0)
    assert 0 <= float(r) <= 1e-10
    bad = Displacement(broken=True).double()
    r_bad = mc_regulariser(bad, data, "O3", rep_in=KINDS, rep_out="node:vectors", n_samples=4, generator=0)
    assert float(r_bad) > 1e-4
    # the broken layer keeps the symmetry of rotations about the learned direction's axis only if aligned:
    # here it is generic, so every candidate subgroup is broken too
    assert float(mc_regulariser(bad, data, "SO2z", rep_in=KINDS, rep_out="node:vectors", generator=0)) > 1e-6
    # the input Batch is not modified
    assert torch.equal(data.pos, _graphs().pos)


def test_regularised_training_step_on_pyg_model():
    torch.manual_seed(0)
    data = _graphs()
    target = torch.randn(data.num_nodes, 3, dtype=F64)
    model = Displacement(broken=True).double()
    tuner = StrengthTuner(["O3", "O2z"], method="mc", initial=1.0, power=2.0, every=1)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)
    first = float(mc_regulariser(model, data, "O3", rep_in=KINDS, rep_out="node:vectors", generator=0))
    for epoch in range(1, 31):
        loss = ((model(data) - target) ** 2).mean() + 10 * tuner.penalty(
            model, data, rep_in=KINDS, rep_out="node:vectors", generator=epoch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tuner.epoch_hook(epoch)
    assert model.bias.grad is not None
    last = float(mc_regulariser(model, data, "O3", rep_in=KINDS, rep_out="node:vectors", generator=0))
    assert last < 0.5 * first  # the regulariser pulled the broken layer towards O(3)
    rows = symmetry_report(model, data, ["O3", "O2z"], rep_in=KINDS, rep_out="node:vectors", tuner=tuner)
    assert [r["group"] for r in rows] == ["O3", "O2z"] and all(r["regulariser"] is None for r in rows)
    assert all(r["strength"] is not None and r["equivariance_error"] >= 0 for r in rows)


def test_pyg_bad_kinds():
    data = _graphs()
    m = Displacement().double()
    with pytest.raises(ValueError, match="rep_in"):
        mc_regulariser(m, data, "O3", rep_in="node:points", rep_out="node:vectors")
    with pytest.raises(ValueError, match="rep_in"):
        mc_regulariser(m, data, "O3", rep_in={"coords": "node:points"}, rep_out="node:vectors")
    with pytest.raises(ValueError, match="rep_in"):
        mc_regulariser(m, data, "O3", rep_in={"pos": "node:foo"}, rep_out="node:vectors")
