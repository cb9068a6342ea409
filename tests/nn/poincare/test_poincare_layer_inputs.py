"""Every Poincaré layer rejects points outside the ball and non-finite input with a ValueError naming ``x``,
and every constructor rejects a non-positive or non-finite curvature naming ``c``."""

from __future__ import annotations

import math

import pytest
import torch

import geodl.nn.poincare as P

# (name, factory(c), input shape); the ball dimension is 1 for image layers, -1 for the linear ones
LAYERS = [
    ("PoincareLinear", lambda c: P.PoincareLinear(4, 3, c=c), (2, 4), -1),
    ("PoincareMLR", lambda c: P.PoincareMLR(4, 3, c=c), (2, 4), -1),
    ("PoincareConv2d", lambda c: P.PoincareConv2d(4, 4, 3, c=c), (2, 4, 5, 5), 1),
    ("PoincareBatchNorm2d", lambda c: P.PoincareBatchNorm2d(4, c=c), (2, 4, 5, 5), 1),
    ("PoincareReLU", lambda c: P.PoincareReLU(c=c, dim=1), (2, 4, 5, 5), 1),
    ("PoincareAvgPool2d", lambda c: P.PoincareAvgPool2d(c=c), (2, 4, 4, 4), 1),
    ("PoincareResidualBlock", lambda c: P.PoincareResidualBlock(4, 4, c=c), (2, 4, 5, 5), 1),
    ("PoincareResidualBlock(fused=False)", lambda c: P.PoincareResidualBlock(4, 4, c=c, fused=False),
     (2, 4, 5, 5), 1),
    ("PoincareResidualBlock(stride=2)", lambda c: P.PoincareResidualBlock(4, 8, stride=2, c=c), (2, 4, 6, 6), 1),
]


def _inside(shape, dim, c, radius=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    return radius * x / (x.norm(dim=dim, keepdim=True) * c ** 0.5)


@pytest.mark.parametrize("name,factory,shape,dim", LAYERS, ids=[row[0] for row in LAYERS])
@pytest.mark.parametrize("c", [1.0, 0.25])
def test_inside_points_pass_outside_and_nan_raise(name, factory, shape, dim, c):
    m = factory(c)
    x = _inside(shape, dim, c)
    y = m(x)
    assert torch.isfinite(y).all()
    # one pixel pushed just outside the ball: c‖x‖² = 1.0201
    bad = x.clone()
    idx = (0,) * (len(shape) - 1)
    v = bad[idx] if dim == -1 else bad[(0, slice(None)) + (0,) * (len(shape) - 2)]
    v.mul_(1.01 / (c ** 0.5 * v.norm()))
    with pytest.raises(ValueError, match=r"^x: points must lie inside the Poincaré ball") as info:
        m(bad)
    assert "1.02" in str(info.value)  # the worst c‖x‖² is reported
    for value in (math.nan, math.inf):
        bad = x.clone()
        bad.view(-1)[3] = value
        with pytest.raises(ValueError, match=r"^x: contains NaN or inf"):
            m(bad)


@pytest.mark.parametrize("name,factory,shape,dim", LAYERS, ids=[row[0] for row in LAYERS])
@pytest.mark.parametrize("c", [0.0, -1.0, math.nan, math.inf])
def test_non_positive_curvature_raises_naming_c(name, factory, shape, dim, c):
    with pytest.raises(ValueError, match=r"^c: "):
        factory(c)


@pytest.mark.parametrize("c", [0.0, -0.5, math.nan])
def test_resnet_rejects_bad_curvature_and_nan_images(c):
    with pytest.raises(ValueError, match=r"^c: "):
        P.PoincareResNet(depth=8, widths=(4, 4, 4), in_channels=1, c=c)
    net = P.PoincareResNet(depth=8, widths=(4, 4, 4), in_channels=1, num_classes=3)
    x = torch.randn(2, 1, 6, 6)
    assert torch.isfinite(net(x)).all()  # Euclidean images of any norm are fine: the stem maps them in
    x[1, 0, 2, 3] = math.nan
    with pytest.raises(ValueError, match=r"^x: contains NaN or inf"):
        net(x)
