"""The CUDA paths of every landed method: the same numbers as on the CPU, and sync-free where promised.

Each test builds the model on the CPU, copies it to CUDA, and compares outputs and gradients of one
forward + backward (float64 where the method allows it, so the tolerances measure the algorithm and not
float32 reduction order). They are marked ``cuda`` and skipped without a device; ``benchmarks/gpu_check.sh``
runs them on the GPU machine (``pytest -m cuda``).
"""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.cuda


def _grads(model):
    return [p.grad.detach().cpu() if p.grad is not None else None for p in model.parameters()]


def _same_on_cuda(model, inputs: dict, reduce, *, rtol=1e-9, atol=1e-9):
    """Forward + ``reduce(out).backward()`` on CPU and on CUDA from the same weights: outputs and grads agree."""
    cpu = model
    gpu = copy.deepcopy(model).cuda()
    out_c = cpu(**inputs)
    reduce(out_c).backward()
    out_g = gpu(**{k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()})
    reduce(out_g).backward()

    def flat(o):
        return [o] if isinstance(o, torch.Tensor) else [v for v in o.values() if isinstance(v, torch.Tensor)]

    for a, b in zip(flat(out_c), flat(out_g)):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=rtol, atol=atol)
    for a, b in zip(_grads(cpu), _grads(gpu)):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=rtol, atol=atol)


def _nbody_inputs(B=4, N=5):
    from geodl.nn.backbones import full_graph_edges

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(B * N, 3, generator=g, dtype=torch.float64)
    vel = torch.randn(B * N, 3, generator=g, dtype=torch.float64)
    q = torch.where(torch.rand(B * N, 1, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    batch = torch.arange(B).repeat_interleave(N)
    return {"x": q, "pos": pos, "batch": batch, "vel": vel, "num_graphs": B, "edge_index": full_graph_edges(batch)}


@pytest.mark.parametrize("name", ["FA-GNN", "EGNN"])
def test_nbody_models_on_cuda(name):
    from geodl.bench.tasks.nbody import build_model

    torch.manual_seed(0)
    kw = {"degeneracy": "flag"} if name == "FA-GNN" else {}
    _same_on_cuda(build_model(name, **kw).double(), _nbody_inputs(), lambda o: o.pow(2).sum())


@pytest.mark.parametrize("name", ["FA-GNN", "EGNN"])
def test_nbody_step_is_sync_free_on_cuda(name):
    """The CUDA check of tests/nn/frame_averaging/test_sync_free.py: forward, backward and a capturable Adam
    step with the sizes given raise nothing under ``torch.cuda.set_sync_debug_mode("error")``."""
    from geodl.bench.tasks.nbody import build_model

    torch.manual_seed(0)
    kw = {"degeneracy": "flag"} if name == "FA-GNN" else {}
    model = build_model(name, **kw).cuda()
    opt = torch.optim.Adam(model.parameters(), 1e-3, capturable=True)
    inputs = {k: (v.float().cuda() if v.is_floating_point() else v.cuda()) if isinstance(v, torch.Tensor) else v
              for k, v in _nbody_inputs().items()}
    for _ in range(2):  # the first step allocates the optimizer state and compiles the kernels
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss = model(**inputs).pow(2).mean()
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert torch.isfinite(loss).item()


def test_vinet_on_cuda():
    from geodl.nn import VINet

    torch.manual_seed(0)
    net = VINet(resolution=(16, 16), channels=(4, 8, 8), hidden=8).double().eval()
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(60, 3, generator=g, dtype=torch.float64)
    batch = torch.arange(3).repeat_interleave(20)
    _same_on_cuda(net, {"pos": pos, "batch": batch, "num_graphs": 3},
                  lambda o: o["polar_logits"].sum() + o["azimuth_logits"].sum() + o["rotation"].sum())


def test_spherical_projection_on_cuda():
    from geodl.nn.spherical import spherical_projection

    g = torch.Generator().manual_seed(0)
    pos = torch.randn(500, 3, generator=g, dtype=torch.float64)
    batch = torch.arange(5).repeat_interleave(100)
    cpu = spherical_projection(pos, batch, num_graphs=5, resolution=(16, 32))
    gpu = spherical_projection(pos.cuda(), batch.cuda(), num_graphs=5, resolution=(16, 32))
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=0)


def test_poincare_resnet_on_cuda():
    from geodl.nn.poincare import PoincareResNet

    torch.manual_seed(0)
    net = PoincareResNet(depth=8, widths=(4, 8, 8), in_channels=1).double()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _same_on_cuda(net, {"x": x}, lambda o: o.pow(2).sum(), rtol=1e-8, atol=1e-8)


def test_poincare_resnet_bf16_autocast_on_cuda():
    """Under bfloat16 autocast on CUDA the activations stay in the ball and finite (the CPU test's CUDA twin)."""
    from geodl.nn.poincare import PoincareResNet

    torch.manual_seed(0)
    net = PoincareResNet(depth=8, widths=(4, 8, 8), in_channels=1).cuda()
    x = torch.rand(8, 1, 8, 8, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        feats = net.features(x)
        loss = net.head(feats).float().pow(2).mean()
    loss.backward()
    assert torch.isfinite(feats).all() and (feats.float().norm(dim=1) < 1).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_soft_equivariance_on_cuda():
    from geodl.nn.soft_equivariance import RepMLP, projection_regulariser

    torch.manual_seed(0)
    net = RepMLP("2xvectors", "vectors", hidden="2xscalars+vectors", num_layers=1, group="O3", path="rpp").double()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _same_on_cuda(net, {"x": x}, lambda o: o.pow(2).sum())
    reg_c = projection_regulariser(net, "O2z")
    reg_g = projection_regulariser(copy.deepcopy(net).cuda(), "O2z")
    torch.testing.assert_close(reg_g.cpu(), reg_c, rtol=1e-9, atol=1e-12)
