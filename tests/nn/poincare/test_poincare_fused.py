"""The fused per-pixel chains of the Poincaré ResNet (``geodl/nn/poincare/_fused.py``) against the layers run one
by one (``fused=False``, the definition): outputs, gradients of every parameter and the running statistics, in
float64, training and eval mode; the memory the fused path saves for backward; derivatives at zero vectors."""

from __future__ import annotations

import copy

import pytest
import torch

from geodl.bench._memory import saved_activation_bytes
from geodl.nn.poincare import PoincareResidualBlock, PoincareResNet, expmap0
from geodl.nn.poincare._ball import _asinh, _norm


def _perturbed(net, zero_init: bool):
    """Non-trivial parameters: biases, batch-norm shifts and (unless zero_init) scales away from their init."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if hasattr(m, "shift"):
                m.shift.copy_(0.3 * torch.randn(m.shift.shape, generator=g, dtype=m.shift.dtype))
                if not zero_init:
                    m.scale.fill_(0.7)
            if getattr(m, "bias", None) is not None and m.bias.dim() == 1:
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype))
    return net


def _unfused(net):
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if hasattr(m, "fused"):
            m.fused = False
    return ref


@pytest.mark.parametrize("zero_init", [True, False])
@pytest.mark.parametrize("train", [True, False])
def test_fused_resnet_equals_layers(zero_init, train):
    torch.manual_seed(0)
    net = _perturbed(PoincareResNet(8, (3, 5, 6), in_channels=2, num_classes=4, zero_init_residual=zero_init).double(),
                     zero_init)
    if not train:  # running statistics away from their init
        x0 = torch.randn(6, 2, 6, 6, dtype=torch.float64)
        with torch.no_grad():
            net(x0)
    ref = _unfused(net)
    net.train(train), ref.train(train)
    x = 2 * torch.randn(4, 2, 6, 6, dtype=torch.float64)
    y, yr = net(x), ref(x)
    torch.testing.assert_close(y, yr, atol=1e-10, rtol=1e-10)
    g = torch.autograd.grad(y.square().sum(), list(net.parameters()))
    gr = torch.autograd.grad(yr.square().sum(), list(ref.parameters()))
    for (name, _), a, b in zip(net.named_parameters(), g, gr):
        assert torch.isfinite(a).all(), name
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-8, msg=name)
    for (name, a), (_, b) in zip(net.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=name)


@pytest.mark.parametrize("stride,c_out", [(1, 4), (2, 6)])
def test_fused_block_equals_layers(stride, c_out):
    torch.manual_seed(1)
    block = _perturbed(PoincareResidualBlock(4, c_out, stride, c=0.7, zero_init_residual=False).double(), False)
    ref = _unfused(block)
    x = expmap0(torch.randn(3, 4, 5, 5, dtype=torch.float64), c=0.7, dim=1).requires_grad_()
    y, yr = block(x), ref(x)
    torch.testing.assert_close(y, yr, atol=1e-10, rtol=1e-10)
    gx, = torch.autograd.grad(y.sum(), x)
    gxr, = torch.autograd.grad(yr.sum(), x)
    torch.testing.assert_close(gx, gxr, atol=1e-9, rtol=1e-8)


def test_fused_block_gradcheck():
    torch.manual_seed(2)
    block = _perturbed(PoincareResidualBlock(2, 3, 2, zero_init_residual=False).double(), False)
    x = expmap0(torch.randn(2, 2, 3, 3, dtype=torch.float64), dim=1).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: block(t), (x,), atol=1e-6)


def test_fused_saves_little_for_backward():
    """The fused ResNet keeps a fraction of what the layer-by-layer one does (the recomputed segments keep
    only their inputs); the Euclidean figure of the same size is measured by ``geodl bench poincare``."""
    torch.manual_seed(0)
    net = PoincareResNet(8, (4, 8, 8), in_channels=1)
    x = torch.rand(8, 1, 8, 8)
    fused = saved_activation_bytes(net, x)
    layered = saved_activation_bytes(_unfused(net), x)
    assert fused < layered / 4, (fused, layered)


def test_zero_vectors_have_finite_derivatives():
    """ReLU leaves whole channel vectors at 0: the norm and asinh must differentiate there (no 0 * inf)."""
    u = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    u[0, :, 0, 0] = torch.tensor([0.3, -0.2, 0.1])
    u.requires_grad_()
    n = _norm(u, 1)
    g, = torch.autograd.grad(n.sum(), u)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(n, torch.linalg.vector_norm(u, dim=1, keepdim=True).clamp_min(1e-300))
    p = torch.tensor([0.0, -0.0, 1e-30, -3.0, 1e200], dtype=torch.float64, requires_grad=True)
    a = _asinh(p)
    torch.testing.assert_close(a, torch.asinh(p), atol=0, rtol=1e-15)
    g, = torch.autograd.grad(a.sum(), p)
    torch.testing.assert_close(g, 1 / torch.sqrt(1 + p.detach() ** 2))


def test_fused_network_trains_without_nan_at_zero_patches():
    """Zero images make whole patches 0 (the padding region and all pixels): gradients stay finite."""
    torch.manual_seed(0)
    net = PoincareResNet(8, (2, 4, 4), in_channels=1, num_classes=3)
    x = torch.zeros(4, 1, 6, 6)
    loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
