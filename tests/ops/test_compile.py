"""torch.compile(fullgraph=True) of a small model built on geodl's custom ops matches eager."""

import shutil

import pytest
import torch

from geodl.ops import eigh3x3, scatter, segment


class _FrameModel(torch.nn.Module):
    """Per-graph PCA frame (scatter mean + scatter-sum covariance + eigh3x3) and pooled invariants."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 8, dtype=torch.float64)

    def forward(self, pos, batch, ptr, num_graphs: int):
        c = scatter(pos, batch, dim=0, dim_size=num_graphs, reduce="mean")
        x = pos - c[batch]
        cov = scatter((x[:, :, None] * x[:, None, :]).flatten(1), batch, dim=0, dim_size=num_graphs, reduce="sum")
        w, V, gap = eigh3x3(cov.view(-1, 3, 3))  # validate=True: value checks are skipped while tracing
        local = (x[:, :, None] * V[batch]).sum(1)  # coordinates in the frame
        h = self.lin(torch.cat([local.abs(), (x * x).sum(1, keepdim=True)], 1)).relu()
        return segment(h, ptr, "max") + w.sum(1, keepdim=True) + gap[:, None]


# aot_eager traces the full graph (dynamo, fake tensors, autograd); inductor also generates and
# builds C++ kernels on the CPU (about 90 s cold on 2 cores), which needs a C++ compiler.
_HAS_CXX = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
_CASES = [
    pytest.param("cpu", "aot_eager"),
    pytest.param("cpu", "inductor", marks=pytest.mark.skipif(not _HAS_CXX, reason="needs a C++ compiler")),
    pytest.param("cuda", "inductor", marks=[pytest.mark.cuda, pytest.mark.skipif(
        not torch.cuda.is_available(), reason="needs a CUDA device")]),
]


@pytest.mark.parametrize(("device", "backend"), _CASES)
def test_compile_fullgraph_matches_eager(device, backend):
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(0)
    sizes = torch.tensor([5, 7, 4])
    batch = torch.repeat_interleave(torch.arange(3), sizes).to(device)
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)]).to(device)
    scale = torch.tensor([3.0, 1.5, 0.5], dtype=torch.float64)
    pos = (torch.randn(16, 3, dtype=torch.float64, generator=gen) * scale).to(device).requires_grad_()
    model = _FrameModel().to(device)
    out = model(pos, batch, ptr, 3)
    (g,) = torch.autograd.grad(out.sum(), pos)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out_c = compiled(pos, batch, ptr, 3)
    (g_c,) = torch.autograd.grad(out_c.sum(), pos)
    assert torch.allclose(out_c, out, rtol=1e-10, atol=1e-12)
    assert torch.allclose(g_c, g, rtol=1e-8, atol=1e-10)


def _egnn_chain(pos, batch, num_nodes: int):
    """The core equivariant-GNN chain: neighbours -> edge harmonics -> messages summed per node."""
    from geodl.ops import knn_graph, spherical_harmonics

    src, dst = knn_graph(pos, 4, batch)
    Y = spherical_harmonics(3, pos[src] - pos[dst])
    return scatter(Y, dst, 0, dim_size=num_nodes, reduce="sum")


@pytest.mark.parametrize(("device", "backend"), _CASES)
def test_compile_fullgraph_knn_sh_scatter_chain(device, backend):
    """``knn_graph -> spherical_harmonics -> scatter`` compiles as one graph (values and gradients as eager)."""
    torch._dynamo.reset()
    gen = torch.Generator().manual_seed(1)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([9, 7])).to(device)
    pos = torch.randn(16, 3, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    out = _egnn_chain(pos, batch, 16)
    (g,) = torch.autograd.grad((out ** 2).sum(), pos)
    compiled = torch.compile(_egnn_chain, fullgraph=True, backend=backend)
    out_c = compiled(pos, batch, 16)
    (g_c,) = torch.autograd.grad((out_c ** 2).sum(), pos)
    torch.testing.assert_close(out_c, out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g_c, g, rtol=1e-8, atol=1e-10)
