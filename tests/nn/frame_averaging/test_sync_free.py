"""The sync-free training step of FA-GNN and EGNN: no host reads in forward or backward given the sizes.

On the ``meta`` device every host read (``.item()``, ``bool(t)``, ``int(t)``, ``.tolist()``) raises, so a
forward + backward that runs there reads nothing on the host, which is what CUDA-graph capture
(``torch.cuda.graph``, ``torch.compile(mode="reduce-overhead")``) needs. The numbers of that call are
the eager ones (checked on the CPU).
"""

from __future__ import annotations

import pytest
import torch

from geodl.bench.tasks.nbody import build_model
from geodl.nn.backbones import full_graph_edges

B, N = 4, 5


def _inputs(device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(B * N, 3, generator=g, dtype=dtype)
    vel = torch.randn(B * N, 3, generator=g, dtype=dtype)
    q = torch.where(torch.rand(B * N, 1, generator=g) < 0.5, -1.0, 1.0).to(dtype)
    batch = torch.arange(B).repeat_interleave(N)
    return [t.to(device) for t in (q, pos, vel, batch, full_graph_edges(batch))]


def _meta_step(model):
    q, pos, vel, batch, ei = _inputs("meta", torch.float32)
    out = model.to("meta")(q, pos, batch, vel=vel, num_graphs=B, edge_index=ei)
    out.pow(2).mean().backward()
    return out


@pytest.mark.parametrize("name,kw", [
    ("FA-GNN", {"degeneracy": "flag"}),
    ("FA-GNN", {"degeneracy": "flag", "latent_frames": "centered", "residual": False}),
    ("FA-GNN", {"degeneracy": "augment"}),
    ("EGNN", {}),
    ("EGNN", {"input_distance": True}),
])
def test_forward_and_backward_read_nothing_on_the_host(name, kw):
    torch.manual_seed(0)
    out = _meta_step(build_model(name, **kw))
    assert out.shape == (B * N, 3) and out.device.type == "meta"


def test_the_meta_check_catches_host_reads():
    """Not vacuous: the "warn" policy reads the degeneracy mask, and the meta run refuses it."""
    torch.manual_seed(0)
    with pytest.raises(RuntimeError, match="meta"):
        _meta_step(build_model("FA-GNN", degeneracy="warn"))
    q, pos, vel, batch, _ = _inputs("meta", torch.float32)
    with pytest.raises(RuntimeError, match="meta"):  # without the sizes the default graph is a host read
        build_model("EGNN").to("meta")(q, pos, batch, vel=vel)


@pytest.mark.parametrize("name", ["FA-GNN", "EGNN"])
def test_sync_free_call_gives_the_eager_numbers(name):
    torch.manual_seed(0)
    kw = {"degeneracy": "flag"} if name == "FA-GNN" else {}
    model = build_model(name, **kw).double()
    q, pos, vel, batch, ei = _inputs()
    ref = model(q, pos, batch, vel=vel)
    g_ref = torch.autograd.grad(ref.pow(2).sum(), list(model.parameters()))
    got = model(q, pos, batch, vel=vel, num_graphs=B, edge_index=ei)
    g_got = torch.autograd.grad(got.pow(2).sum(), list(model.parameters()))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
