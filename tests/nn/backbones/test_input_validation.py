"""Input checks of the n-body models (EGNN, FA-GNN): the charges must be (N,) or (N, 1)."""

from __future__ import annotations

import pytest
import torch

from geodl.nn import EGNN, FAGNN

F64 = torch.float64


def _inputs(n=4):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(n, 3, generator=g, dtype=F64)
    vel = torch.randn(n, 3, generator=g, dtype=F64)
    return pos, vel


@pytest.mark.parametrize("model", [lambda: EGNN(8, 1).double(), lambda: FAGNN(12, 1).double()])
@pytest.mark.parametrize("shape", [(1, 4), (2, 2), (4, 1, 1), (1, 1, 4), (4, 2), (3,)])
def test_charges_of_other_shapes_are_refused(model, shape):
    pos, vel = _inputs()
    charges = torch.ones(shape, dtype=F64)
    with pytest.raises(ValueError, match=r"charges: expected shape \(4,\) or \(4, 1\)"):
        model()(charges, pos, vel=vel)


@pytest.mark.parametrize("model", [lambda: EGNN(8, 1).double(), lambda: FAGNN(12, 1).double()])
def test_charges_n_and_n1_agree(model):
    pos, vel = _inputs()
    m = model()
    q = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=F64)
    assert torch.equal(m(q, pos, vel=vel), m(q[:, None], pos, vel=vel))
