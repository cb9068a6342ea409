"""The CIFAR ResNet baseline: shapes, topology (depth, strides, shortcuts), check_module, training, bad arguments."""

import pytest
import torch
from torch import nn

from geodl.nn import ResNet
from geodl.testing import check_module


def net(**kw):
    torch.manual_seed(0)
    return ResNet(**kw)


@pytest.mark.parametrize("depth, widths, in_channels, size", [
    (8, (4, 8, 16), 1, 8), (20, (16, 32, 64), 3, 32), (8, (8, 16, 32), 3, 8), (20, (2, 3, 5), 1, 32),
    (14, (4, 4, 4), 1, 7), (8, (4, 8, 16), 3, 1)])
def test_output_shapes(depth, widths, in_channels, size):
    model = net(depth=depth, widths=widths, in_channels=in_channels, num_classes=7)
    out = model(torch.rand(3, in_channels, size, size))
    assert out.shape == (3, 7) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert model.eval()(torch.rand(1, in_channels, size, size + 3)).shape == (1, 7)


@pytest.mark.parametrize("depth", [8, 14, 20, 32])
def test_topology_counts_the_layers_of_he_et_al(depth):
    model = net(depth=depth)
    n = (depth - 2) // 6
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    three = [m for m in convs if m.kernel_size == (3, 3)]
    ones = [m for m in convs if m.kernel_size == (1, 1)]
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # depth = the 3x3 convolutions (stem + 2 per block) + the linear head; 2 projection shortcuts
    assert len(three) + len(linear) == depth == 6 * n + 2
    assert len(ones) == 2 and all(m.stride == (2, 2) for m in ones)
    assert sum(m.stride == (2, 2) for m in three) == 2
    assert all(m.bias is None for m in convs)


def test_resnet20_parameter_count():
    # ResNet-20 of He et al. (Table 6: 0.27M): stem 432 + BN 32, stage 1: 6 * (2304 + 32),
    # stage 2: 4608 + 5 * 9216 + 6 * 64 + projection 512 + 64, stage 3: 18432 + 5 * 36864 + 6 * 128
    # + projection 2048 + 128, head 650
    stage1 = 6 * (16 * 16 * 9 + 32)
    stage2 = 16 * 32 * 9 + 5 * 32 * 32 * 9 + 6 * 64 + 16 * 32 + 64
    stage3 = 32 * 64 * 9 + 5 * 64 * 64 * 9 + 6 * 128 + 32 * 64 + 128
    expected = 3 * 16 * 9 + 32 + stage1 + stage2 + stage3 + 64 * 10 + 10
    assert sum(p.numel() for p in ResNet().parameters()) == expected == 272474


def test_stage_resolutions():
    model = net(depth=8, widths=(4, 8, 16)).eval()
    shapes = []
    hooks = [s.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape))) for s in model.stages]
    model(torch.rand(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert shapes == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]


def test_blocks_add_their_shortcut():
    model = net(depth=8, widths=(4, 8, 16)).eval()
    x = torch.rand(2, 4, 6, 6)  # non-negative, as after a ReLU
    identity_block, projection_block = model.stages[0][0], model.stages[1][0]
    with torch.no_grad():
        for blk in (identity_block, projection_block):
            blk.conv2.weight.zero_()  # the residual branch gives bn2(0) = 0 (eval, fresh statistics)
        torch.testing.assert_close(identity_block(x), x)
        proj = projection_block.shortcut
        assert isinstance(proj[0], nn.Conv2d) and proj[0].stride == (2, 2)
        torch.testing.assert_close(projection_block(x), torch.relu(proj[1](proj[0](x))))
        assert projection_block(x).shape == (2, 8, 3, 3)


def test_check_module_batching_state_dict_gradients_side_effects():
    model = net(depth=8, widths=(4, 8, 8), in_channels=1)
    assert model.symmetry.group == "perm" and model.symmetry.in_kinds == {"x": "node:scalar"}
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    report = check_module(model.eval(), {"x": x}, checks=("equivariance", "batching", "state_dict", "gradients",
                                                          "side_effects"))
    assert report.items["batching"][0] == "passed" and report.items["equivariance"][0] == "passed"


def test_rows_are_independent_in_eval_mode_only():
    # in training mode BatchNorm normalises with the batch statistics, which couple the rows
    # (check_module runs its copies in eval mode, where they are independent)
    model = net(depth=8, widths=(4, 8, 8), in_channels=1)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    report = check_module(model.train(), {"x": x}, checks=("batching",), raise_on_fail=False)
    assert report.items["batching"][0] == "passed" and model.training
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:3], model(x[:3]))
    model.train()
    with torch.no_grad():
        full, half = model(x), model(x[:3])
    assert not torch.allclose(full[:3], half)


def test_compile_fullgraph():
    model = net(depth=8, widths=(2, 4, 4), in_channels=1)
    check_module(model.eval(), {"x": torch.rand(4, 1, 8, 8)}, checks=("compile",))


def test_trains_on_a_small_batch():
    model = net(depth=8, widths=(4, 8, 8), in_channels=1, num_classes=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(12, 1, 8, 8, generator=g), torch.arange(12) % 3
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0]


def test_float64_module():
    model = net(depth=8, widths=(2, 4, 4)).double().eval()
    assert model(torch.rand(2, 3, 8, 8, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(TypeError, match="^x: expected dtype torch.float64"):
        model(torch.rand(2, 3, 8, 8))


@pytest.mark.parametrize("kw, err, name", [
    ({"depth": 21}, ValueError, "depth"), ({"depth": 2}, ValueError, "depth"), ({"depth": 0}, ValueError, "depth"),
    ({"depth": 20.0}, TypeError, "depth"), ({"depth": True}, TypeError, "depth"),
    ({"widths": (16, 32)}, ValueError, "widths"), ({"widths": (16, 32, 64, 128)}, ValueError, "widths"),
    ({"widths": (16, 0, 64)}, ValueError, r"widths\[1\]"), ({"widths": 16}, TypeError, "widths"),
    ({"widths": "abc"}, TypeError, "widths"), ({"widths": (16, 32.0, 64)}, TypeError, r"widths\[1\]"),
    ({"widths": (10**6, 10**6, 10**6)}, ValueError, "widths"),
    ({"in_channels": 0}, ValueError, "in_channels"), ({"in_channels": "3"}, TypeError, "in_channels"),
    ({"num_classes": 0}, ValueError, "num_classes"), ({"num_classes": None}, TypeError, "num_classes")])
def test_bad_arguments(kw, err, name):
    with pytest.raises(err, match=f"^{name}: "):
        ResNet(**kw)


@pytest.mark.parametrize("x, err", [
    (torch.rand(2, 1, 8, 8), ValueError), (torch.rand(3, 8, 8), ValueError), (torch.rand(2, 3, 0, 8), ValueError),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError), ([[0.0]], TypeError),
    (torch.rand(2, 3, 8, 8, dtype=torch.float64), TypeError)])
def test_bad_input(x, err):
    model = net(depth=8, widths=(2, 4, 4)).eval()
    with pytest.raises(err, match="^x: "):
        model(x)


def test_huge_input_is_refused_before_allocating():
    model = net(depth=8, widths=(16, 4, 4)).eval()
    x = torch.empty(1 << 20, 3, 1, 1).expand(1 << 20, 3, 1 << 12, 1 << 10)  # a view: no memory behind it
    with pytest.raises(ValueError, match="^x: .* would need"):
        model(x)
