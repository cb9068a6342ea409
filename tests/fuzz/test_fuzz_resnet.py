"""Fuzz of the resnet entries (registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases  # noqa: F401

S = st()


@S.composite
def _resnet_valid(draw):
    import torch

    c = draw(S.integers(1, 3))
    b, h, w = draw(S.integers(0, 4)), draw(S.integers(1, 9)), draw(S.integers(1, 9))
    g = torch.Generator().manual_seed(draw(S.integers(0, 2**31 - 1)))
    return dict(depth=draw(S.sampled_from([8, 14])), widths=tuple(draw(S.lists(S.integers(1, 6), min_size=3, max_size=3))),
                in_channels=c, num_classes=draw(S.integers(1, 5)),
                x=torch.rand(b, c, h, w, generator=g, dtype=torch.float64))


@fuzz("geodl.nn.backbones.ResNet", examples=40)
@with_cases(lambda: cases(_resnet_valid(), {
    "depth": values(9, 2, 0, -4, 20.0, True, "8", None, 6 * HUGE + 2),
    "widths": values((4, 4), (4, 4, 4, 4), (4, 0, 4), (4, -1, 4), (4, 2.5, 4), 4, "abc", None, (HUGE, 4, 4),
                     (4, 4, HUGE)),
    "in_channels": values(0, -1, True, 1.5, "3", None, HUGE),
    "num_classes": values(0, -1, True, 1.5, "10", None, HUGE),
    "x": tensor_muts("x", shapes={"3-d": lambda x: x[0], "5-d": lambda x: x[None],
                                  "one channel more": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1, *x.shape[2:]),
                                  "no rows of pixels": lambda x: x[:, :, :0],
                                  "float32 (the module is float64)": lambda x: x.float()})}))
def build_resnet(depth, widths, in_channels, num_classes, x):
    import torch

    from geodl.nn.backbones import ResNet

    def call():
        torch.manual_seed(0)
        m = ResNet(depth, widths, in_channels, num_classes).double().eval()
        return m, m(x)

    def verify(res):
        m, y = res
        expect(y.shape == (x.shape[0], num_classes) and y.dtype == torch.float64, f"shape {tuple(y.shape)}")
        finite(y)
        n_conv = sum(isinstance(k, torch.nn.Conv2d) and k.kernel_size == (3, 3) for k in m.modules())
        expect(n_conv + 1 == depth, f"{n_conv} 3x3 convolutions for depth {depth}")
        if len(x):
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
            close(m(x[perm]), y[perm], atol=1e-10, msg="rows permuted")
            close(m(x[:1]), y[:1], atol=1e-10, msg="one row alone (eval mode)")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_resnet"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
