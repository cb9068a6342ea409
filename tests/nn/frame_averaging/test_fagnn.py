"""FA-GNN and the EGNN baseline: E(3)+perm equivariance, batching, gradients, degeneracy, bad input."""

from __future__ import annotations

import warnings

import pytest
import torch

from geodl.nn import EGNN, FAGNN
from geodl.testing import assert_equivariant, equivariance_error
from geodl.testing import check_module

KINDS = ("node:points", "node:vectors", "perm")
MODELS = {
    "fagnn": lambda: FAGNN(hidden_channels=12, num_layers=3),
    "fagnn_residual": lambda: FAGNN(hidden_channels=12, num_layers=2, residual=True),
    "fagnn_centered": lambda: FAGNN(hidden_channels=12, num_layers=3, latent_frames="centered"),
    "egnn": lambda: EGNN(hidden_channels=16, num_layers=3),
}


def _system(n=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, 3, generator=g, dtype=dtype) * torch.tensor([1.0, 1.5, 2.0], dtype=dtype)
    vel = torch.randn(n, 3, generator=g, dtype=dtype)
    q = torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    return pos, vel, q


def _model(name, dtype):
    torch.manual_seed(0)
    return MODELS[name]().to(dtype)


@pytest.mark.parametrize("name", ["fagnn", "fagnn_centered"])
def test_check_module_fagnn(name):
    systems = [_system(n=5, seed=s) for s in range(2)]
    pos, vel, q = (torch.cat(t) for t in zip(*systems))
    batch = torch.arange(2).repeat_interleave(5)
    torch.manual_seed(0)
    model = FAGNN(hidden_channels=12, num_layers=3, latent_frames="centered" if name == "fagnn_centered" else "origin",
                  degeneracy="flag").double()  # "flag": no host read of the degeneracy mask (compile item)
    edges = torch.tensor([[i, j] for b in range(2) for i in range(5 * b, 5 * b + 5) for j in range(5 * b, 5 * b + 5) if i != j]).T
    check_module(model, {"x": q, "pos": pos, "batch": batch, "vel": vel, "edge_index": edges, "num_graphs": 2})


def test_protocol_call_equals_the_positional_call():
    model = _model("fagnn", torch.float64)
    pos, vel, q = _system()
    batch = torch.zeros(5, dtype=torch.long)
    ref = model(pos, vel, q, batch)
    assert torch.equal(model(q, pos, batch, vel=vel), ref)
    edges = torch.tensor([[i, j] for i in range(5) for j in range(5) if i != j]).T
    torch.testing.assert_close(model(q, pos, batch, vel=vel, num_graphs=1, edge_index=edges), ref)
    with pytest.raises(TypeError, match="vel: required"):
        model(q, pos, batch)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equivariant_e3_and_permutations(name, dtype):
    model = _model(name, dtype)
    report = assert_equivariant(lambda p, v, q: model(p, v, q), _system(dtype=dtype), KINDS, "node:points",
                                "E3+perm", generator=0)
    assert {row.element for row in report.rows} >= {"reflection", "translation", "perm", "haar"}


def test_harness_catches_a_backbone_without_frames():
    # the same message-passing backbone fed raw world coordinates (identity frames) is not equivariant
    model = _model("fagnn", torch.float64)

    def no_frames(p, v, q):
        from geodl.nn.frame_averaging import _fagnn

        real = _fagnn.frames

        def identity_frames(pts, batch, group, **kw):
            fr = real(pts, batch, group, **kw)
            fr.rotations = torch.eye(3, dtype=pts.dtype).expand_as(fr.rotations).clone()
            return fr

        _fagnn.frames = identity_frames
        try:
            return model(p, v, q)
        finally:
            _fagnn.frames = real

    assert not equivariance_error(no_frames, _system(), KINDS, "node:points", "E3", generator=0).passed


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_equals_per_sample(name):
    model = _model(name, torch.float64)
    systems = [_system(n=5, seed=s) for s in range(3)]
    singles = [model(*s) for s in systems]
    # interleaved (unsorted) graph ids
    batch = torch.tensor([0, 1, 2] * 5)
    order = torch.cat([torch.nonzero(batch == b).flatten() for b in range(3)])
    pos, vel, q = (torch.empty(15, *t.shape[1:], dtype=t.dtype) for t in systems[0])
    for b, s in enumerate(systems):
        idx = torch.nonzero(batch == b).flatten()
        pos[idx], vel[idx], q[idx] = s
    out = model(pos, vel, q, batch)
    torch.testing.assert_close(out[order], torch.cat(singles), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_reach_every_parameter(name):
    model = _model(name, torch.float32)
    pos, vel, q = _system(dtype=torch.float32)
    loss = ((model(pos, vel, q) - pos) ** 2).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0


def test_degenerate_input_frames_follow_the_policy():
    # a regular pentagon: two equal in-plane eigenvalues, the frame is not defined
    t = torch.arange(5, dtype=torch.float64) * (2 * torch.pi / 5)
    pos = torch.stack([t.cos(), t.sin(), torch.zeros(5, dtype=torch.float64)], -1)
    vel, q = torch.zeros(5, 3, dtype=torch.float64), torch.ones(5, 1, dtype=torch.float64)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="pos"):
        FAGNN(hidden_channels=6, num_layers=1, degeneracy="raise").double()(pos, vel, q)
    with pytest.warns(RuntimeWarning, match="degenerate"):
        FAGNN(hidden_channels=6, num_layers=1).double()(pos, vel, q)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = FAGNN(hidden_channels=6, num_layers=1, degeneracy="flag").double()(pos, vel, q)
    assert out.shape == (5, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_bad_input(name):
    model = _model(name, torch.float32)
    pos, vel, q = _system(dtype=torch.float32)
    bad = pos.clone()
    bad[0, 0] = float("nan")
    cases = [((pos[:, :2], vel, q), "pos"), ((bad, vel, q), "pos"), ((pos[:1], vel[:1], q[:1]), "pos"),
             ((pos, vel[:4], q), "vel"), ((pos, vel, q[:3]), "charges"),
             ((pos, vel, q, torch.zeros(4, dtype=torch.long)), "batch"),
             ((pos, vel, q, torch.tensor([0, 0, 0, 0, 1])), "batch")]
    for args, arg in cases:
        with pytest.raises((ValueError, TypeError), match=arg):
            model(*args)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="hidden_channels"):
        FAGNN(hidden_channels=10)
    with pytest.raises(ValueError, match="num_layers"):
        FAGNN(num_layers=0)
    with pytest.raises(ValueError, match="degeneracy"):
        FAGNN(degeneracy="ignore")
    with pytest.raises(ValueError, match="latent_frames"):
        FAGNN(latent_frames="mean")
    with pytest.raises(ValueError, match="act"):
        EGNN(act="sigmoid")
    with pytest.raises(ValueError, match="hidden_channels"):
        EGNN(hidden_channels=0)


def test_latent_frame_choices_differ():
    """The two latent-frame conventions are different functions (the centred one discards the
    latent mean), so the option is not a no-op."""
    pos, vel, q = _system()
    torch.manual_seed(0)
    a = FAGNN(hidden_channels=12, num_layers=2).double()
    b = FAGNN(hidden_channels=12, num_layers=2, latent_frames="centered").double()
    b.load_state_dict(a.state_dict())
    assert not torch.allclose(a(pos, vel, q), b(pos, vel, q))
