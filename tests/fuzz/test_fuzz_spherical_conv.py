"""Fuzz of the VI-Net projection and SPA-SConv (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, check_entry



# ------------------------------------------------------------------------------------- entries
import math  # noqa: E402

from ._harness import HUGE, Mut, cases, close, expect, finite, fuzz, seeded_tensor, st, tensor_muts  # noqa: E402
from ._harness import values, with_cases  # noqa: E402

S = st()
SEEDS = S.integers(0, 2**31 - 1)
_EVEN = S.sampled_from([2, 4, 6, 8])


def _idx(v):
    import torch

    return torch.tensor(v, dtype=torch.long)


def _flip(x):
    import torch

    return torch.flip(x, (-2, -1))


# ------------------------------------------------------------------------ spherical_projection
@S.composite
def _proj_valid(draw):
    sizes = draw(S.lists(S.integers(0, 12), min_size=1, max_size=3))
    n = sum(sizes)
    seed = draw(SEEDS)
    H, W = draw(S.integers(1, 6)), draw(_EVEN)
    kw = dict(pos=seeded_tensor((n, 3), seed), resolution=draw(S.sampled_from([(H, W), W])),
              fill=draw(S.sampled_from([0.0, -1.0, 2.5])))
    f = draw(S.integers(0, 3))
    kw["features"] = seeded_tensor((n, f), seed + 1) if f else None
    if len(sizes) > 1 or draw(S.booleans()):
        kw["batch"] = _idx([g for g, k in enumerate(sizes) for _ in range(k)])
        kw["num_graphs"] = len(sizes) if draw(S.booleans()) else None
    else:
        kw["batch"], kw["num_graphs"] = None, None
    return kw


_RES_BAD = values(0, -2, (4, 5), (0, 4), (4, 4, 4), 3, 2.5, "8", True, None, (HUGE, HUGE))
_PROJ_MUTS = {
    "pos": tensor_muts("pos", shapes={"(N, 2)": lambda x: x[:, :2], "1-D": lambda x: x[:, 0] if x.dim() == 2 else x}),
    "resolution": _RES_BAD,
    "features": tensor_muts("features", none_ok=True, shapes={"wrong rows": lambda x: x.new_ones(x.shape[0] + 1, 2),
                                                              "1-D": lambda x: x[:, 0] if x.dim() == 2 else x}),
    "batch": [Mut("wrong length", lambda kw: _idx([0] * (kw["pos"].shape[0] + 1))),
              Mut("negative", lambda kw: _idx([-1] * kw["pos"].shape[0]) if kw["pos"].shape[0] else None),
              Mut("float", lambda kw: kw["pos"][:, 0].clone())],
    "num_graphs": values(-1, True, 2.5, "2"),
    "fill": values(float("nan"), float("inf"), "0", None),
}


def _bin(p, H, W):
    x, y, z = (float(v) for v in p)
    th = math.atan2(math.hypot(x, y), z)
    ph = math.atan2(y, x) % (2 * math.pi)
    return min(int(math.floor(th * H / math.pi)), H - 1), int(math.floor(ph * W / (2 * math.pi))) % W


def _proj_oracle(out, pos, batch, num_graphs, resolution, features, fill):
    """Brute force: per cloud and bin, the farthest point (lowest index among ties) and its features."""
    import torch

    H, W = (resolution, resolution) if isinstance(resolution, int) else resolution
    n = pos.shape[0]
    bt = [0] * n if batch is None else batch.tolist()
    B = (1 if batch is None else (max(bt) + 1 if n else 0)) if num_graphs is None else num_graphs
    F = 0 if features is None else features.shape[1]
    expect(tuple(out.shape) == (B, 1 + F, H, W), f"shape {tuple(out.shape)}")
    ref = torch.full((B, 1 + F, H, W), fill, dtype=torch.float64)
    best = {}
    for k in range(n):
        key = (bt[k], *_bin(pos[k], H, W))
        r = float(torch.linalg.vector_norm(pos[k]))
        if key not in best or r > best[key][0]:
            best[key] = (r, k)
    for (b, i, j), (r, k) in best.items():
        ref[b, 0, i, j] = r
        if F:
            ref[b, 1:, i, j] = features[k]
    close(out, ref, atol=1e-12, rtol=0, msg="farthest point per bin")


@fuzz("geodl.nn.spherical.spherical_projection", examples=40)
@with_cases(lambda: cases(_proj_valid(), _PROJ_MUTS))
def build_spherical_projection(pos, batch, num_graphs, resolution, features, fill):
    from geodl.nn.spherical import spherical_projection

    def call():
        return spherical_projection(pos, batch, num_graphs=num_graphs, resolution=resolution, features=features,
                                    fill=fill)

    def verify(out):
        finite(out)
        _proj_oracle(out, pos, batch, num_graphs, resolution, features, fill)

    return call, verify


@fuzz("geodl.nn.spherical.SphericalProjection", examples=30)
@with_cases(lambda: cases(_proj_valid(), _PROJ_MUTS))
def build_spherical_projection_module(pos, batch, num_graphs, resolution, features, fill):
    from geodl.nn.spherical import SphericalProjection

    def call():
        return SphericalProjection(resolution, fill=fill)(pos, batch, num_graphs=num_graphs, features=features)

    def verify(out):
        finite(out)
        _proj_oracle(out, pos, batch, num_graphs, resolution, features, fill)

    return call, verify


# -------------------------------------------------------------------------------- spherical_pad
@S.composite
def _pad_valid(draw):
    H, W = draw(S.integers(1, 5)), draw(_EVEN)
    ph = draw(S.sampled_from([draw(S.integers(0, H)), (draw(S.integers(0, H)), draw(S.integers(0, H)))]))
    pw = draw(S.sampled_from([draw(S.integers(0, W)), (draw(S.integers(0, W)), draw(S.integers(0, W)))]))
    return dict(x=seeded_tensor((draw(S.integers(0, 2)), 2, H, W), draw(SEEDS)), pad_h=ph, pad_w=pw)


@fuzz("geodl.nn.spherical.spherical_pad", examples=40)
@with_cases(lambda: cases(_pad_valid(), {
    "x": [Mut("a string", "abc"), Mut("None", None), Mut("0-d", lambda kw: kw["x"].new_zeros(())),
          Mut("odd W", lambda kw: kw["x"].new_zeros(1, 1, 2, 3) if kw["pad_h"] not in (0, (0, 0)) else None,
              names=("x", "pad_h", "pad_w"))],
    "pad_h": values(-1, HUGE, 2.5, "1", None, (1, 2, 3), True),
    "pad_w": values(-1, HUGE, 2.5, "1", None, (1,)),
}))
def build_spherical_pad(x, pad_h, pad_w):
    import torch

    from geodl.nn.spherical import spherical_pad

    def call():
        return spherical_pad(x, pad_h, pad_w)

    def verify(out):
        H, W = x.shape[-2:]
        t, b = (pad_h, pad_h) if isinstance(pad_h, int) else pad_h
        left, right = (pad_w, pad_w) if isinstance(pad_w, int) else pad_w
        ref = torch.empty(*x.shape[:-2], H + t + b, W + left + right, dtype=x.dtype)
        for r in range(-t, H + b):
            src, shift = (r, 0) if 0 <= r < H else ((-1 - r, W // 2) if r < 0 else (2 * H - 1 - r, W // 2))
            for c in range(-left, W + right):
                ref[..., r + t, c + left] = x[..., src, (c - shift) % W]
        close(out, ref, atol=0, rtol=0, msg="pole rows reversed and rolled by W/2, columns wrapped")

    return call, verify


# ------------------------------------------------------------------------------------- SPAConv2d
@S.composite
def _conv_valid(draw):
    k, s, d = draw(S.integers(1, 4)), draw(S.sampled_from([1, 1, 2])), draw(S.integers(1, 2))
    padding, symmetric = draw(S.sampled_from([("spherical", True), ("zeros", False), ("spherical", False),
                                              ("zeros", True)]))
    need = max(d * (k - 1) + 1 - s, 0)
    lo = max(1, -(-need // s))
    H = s * draw(S.integers(lo, lo + 2))
    W = s * draw(S.integers(lo, lo + 2))
    W += W % 2 * s  # even
    cin, cout = draw(S.integers(1, 3)), draw(S.integers(1, 3))
    return dict(x=seeded_tensor((draw(S.integers(0, 2)), cin, H, W), draw(SEEDS)), in_channels=cin,
                out_channels=cout, kernel_size=k, stride=s, dilation=d, padding=padding, symmetric=symmetric,
                bias=draw(S.booleans()))


@fuzz("geodl.nn.spherical.SPAConv2d", examples=40)
@with_cases(lambda: cases(_conv_valid(), {
    "x": tensor_muts("x", nonfinite=False, shapes={
        "wrong channels": lambda x: x.new_zeros(1, x.shape[1] + 1, x.shape[2], x.shape[3]),
        "3-D": lambda x: x[0], "odd W": lambda x: x.new_zeros(1, x.shape[1], x.shape[2], 7)}),
    "in_channels": values(0, -1, True, 2.5, HUGE), "out_channels": values(0, True, "2"),
    "kernel_size": values(0, -1, (1, 2, 3), 2.5), "stride": values(0, True), "dilation": values(0, -2),
    "padding": values("circular", None, 0), "symmetric": values(1, None, "yes"), "bias": values(0, None),
}))
def build_spa_conv(x, in_channels, out_channels, kernel_size, stride, dilation, padding, symmetric, bias):
    import torch
    import torch.nn.functional as F

    from geodl.nn.spherical import SPAConv2d

    def call():
        torch.manual_seed(0)
        m = SPAConv2d(in_channels, out_channels, kernel_size, stride, dilation, padding=padding,
                      symmetric=symmetric, bias=bias).double()
        return m, m(x)

    def verify(res):
        m, y = res
        B, _, H, W = x.shape
        expect(tuple(y.shape) == (B, out_channels, H // stride, W // stride), f"shape {tuple(y.shape)}")
        finite(y)
        b = 0 if m.bias is None else m.bias.view(1, -1, 1, 1)
        (t, bo), (le, ri) = m.pads
        if padding == "zeros":
            A = lambda z: F.conv2d(F.pad(z, (le, ri, t, bo)), m.conv.weight, stride=stride, dilation=dilation)
        else:
            from geodl.nn.spherical import spherical_pad
            A = lambda z: F.conv2d(spherical_pad(z, (t, bo), (le, ri)), m.conv.weight, stride=stride,
                                   dilation=dilation)
        ref = torch.maximum(A(x), _flip(A(_flip(x)))) if symmetric else A(x)
        close(y, ref + b, atol=1e-12, rtol=1e-12, msg="reference convolution")
        if symmetric:
            close(m(_flip(x)), _flip(y), atol=1e-12, rtol=0, msg="pole flip")
        if padding == "spherical":
            close(m(torch.roll(x, stride, -1)), torch.roll(y, 1, -1), atol=1e-12, rtol=0, msg="roll by the stride")

    return call, verify


# ------------------------------------------------------------------------------ SphericalMaxPool2d
@S.composite
def _pool_valid(draw):
    k, s = draw(S.integers(1, 3)), draw(S.integers(1, 2))
    need = max(k - s, 0)
    lo = max(1, -(-need // s))
    H = s * draw(S.integers(lo, lo + 2))
    W = s * draw(S.integers(lo, lo + 2))
    W += W % 2 * s
    return dict(x=seeded_tensor((draw(S.integers(0, 2)), draw(S.integers(1, 2)), H, W), draw(SEEDS)),
                kernel_size=k, stride=s, padding=draw(S.sampled_from(["spherical", "zeros"])))


@fuzz("geodl.nn.spherical.SphericalMaxPool2d", examples=40)
@with_cases(lambda: cases(_pool_valid(), {
    "x": tensor_muts("x", nonfinite=False, shapes={"3-D": lambda x: x[0],
                                                   "odd W": lambda x: x.new_zeros(1, 1, x.shape[2], 5)}),
    "kernel_size": values(0, -1, True, (2,)), "stride": values(0, 2.5, "2"), "padding": values("reflect", None),
}))
def build_spherical_max_pool(x, kernel_size, stride, padding):
    import torch
    import torch.nn.functional as F

    from geodl.nn.spherical import SphericalMaxPool2d, spherical_pad

    def call():
        return SphericalMaxPool2d(kernel_size, stride, padding=padding)(x)

    def verify(y):
        B, C, H, W = x.shape
        expect(tuple(y.shape) == (B, C, H // stride, W // stride), f"shape {tuple(y.shape)}")
        finite(y)
        if B == 0:
            return
        t = max(kernel_size - stride, 0)
        ph = (t // 2, t - t // 2)
        z = spherical_pad(x, ph, ph) if padding == "spherical" else F.pad(x, (ph[0], ph[1], ph[0], ph[1]))
        ref = z.unfold(2, kernel_size, stride).unfold(3, kernel_size, stride).amax((-2, -1))
        close(y, ref, atol=0, rtol=0, msg="brute-force window max")
        if padding == "spherical":
            m = SphericalMaxPool2d(kernel_size, stride)
            close(m(torch.roll(x, stride, -1)), torch.roll(y, 1, -1), atol=0, rtol=0, msg="roll by the stride")
            if kernel_size >= stride and (kernel_size - stride) % 2 == 0:
                close(m(_flip(x)), _flip(y), atol=0, rtol=0, msg="pole flip")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_spherical_conv"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
