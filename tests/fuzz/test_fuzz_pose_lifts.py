"""Fuzz of the image -> S2 / SO(3) lifts of :mod:`geodl.nn.pose` (entries registered with ``@fuzz`` in
this file), on maps up to 9 x 9 and degrees up to 3: the output shape, finiteness and the quarter-turn
commutation ``lift(rot90(x, k)) = D(Rz(kπ/2)) lift(x)`` (the ``image2d``/``sh``/``so3`` kinds under
``"azimuth:4"``) as the oracle, for the induced lift on every square map and for the orthographic lift
on square maps (on other maps only shape and finiteness)."""

from __future__ import annotations

import math

import pytest

from ._harness import REGISTRY, Mut, bad_ints, cases, check_entry, close, expect, finite, fuzz, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
DTYPES = S.sampled_from(["float64", "float32"])


def _map(shape, seed, dtype):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(getattr(torch, dtype))


def _dtype(x):
    """The dtype the module is moved to: the map's, or float64 for a broken map (refused by forward)."""
    import torch

    return x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float64


def _quarter_turn_oracle(lift, x, y, kind, k):
    import torch
    from geodl.groups import GroupElement, act

    c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
    g = GroupElement(rotation=torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64))
    with torch.no_grad():
        got = lift(torch.rot90(x, k, (-2, -1))).double()
    want = act(kind, g, y.detach().double())
    tol = (1e-10 if x.dtype == torch.float64 else 1e-4) * max(1.0, float(y.detach().abs().max()))
    close(got, want, atol=tol, rtol=0, msg=f"quarter turn k={k}")


def _x_muts(names=("x",)):
    return tensor_muts("x", shapes={"not square": lambda x: x[..., :-1] if x.shape[-1] > 1 else x.new_zeros(*x.shape[:-1], 2),
                                    "one channel more": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1, *x.shape[2:]),
                                    "3-D": lambda x: x[:, 0]}, names=names)


# ------------------------------------------------------------------------------------------- InducedLift
@S.composite
def _induced_case(draw):
    size, C = draw(S.integers(1, 9)), draw(S.integers(1, 3))
    return dict(in_channels=C, out_channels=draw(S.integers(1, 3)), lmax=draw(S.integers(0, 3)), size=size,
                num_radial=draw(S.sampled_from([None, 1, 2, 5])), output=draw(S.sampled_from(["so3", "s2"])),
                x=_map((draw(S.integers(0, 3)), C, size, size), draw(SEEDS), draw(DTYPES)), k=draw(S.integers(0, 3)))


@fuzz("geodl.nn.pose.InducedLift", examples=50)
@with_cases(lambda: cases(_induced_case(), {
    "in_channels": values(*bad_ints(), names=("in_channels", "x")),
    "out_channels": values(*bad_ints()),
    "lmax": values(-1, True, 2.5, "2", None, 10**6),
    "size": values(*bad_ints(), names=("size", "x")) + [Mut("one more", lambda kw: kw["size"] + 1, names=("x",))],
    "num_radial": values(0, -1, True, 2.5, "3", 10**12),
    "output": values("s3", None, 2),
    "x": _x_muts(),
}))
def build_InducedLift(in_channels, out_channels, lmax, size, num_radial, output, x, k):
    import torch
    from geodl.groups import so3_fourier_width
    from geodl.nn.pose import InducedLift

    def call():
        torch.manual_seed(0)
        lift = InducedLift(in_channels, out_channels, lmax, size, num_radial=num_radial, output=output).to(_dtype(x))
        return lift, lift(x)

    def verify(res):
        lift, y = res
        width = so3_fourier_width(lmax) if output == "so3" else (lmax + 1) ** 2
        expect(y.shape == (x.shape[0], out_channels, width), f"shape {tuple(y.shape)}")
        expect(y.dtype == x.dtype, f"dtype {y.dtype}")
        finite(y)
        if x.shape[0]:
            _quarter_turn_oracle(lift, x, y, lift.symmetry.out_kinds, k)

    return call, verify


# ------------------------------------------------------------------------------------------- OrthographicLift
@S.composite
def _ortho_case(draw):
    H = draw(S.integers(1, 9))
    W = H if draw(S.booleans()) else draw(S.integers(1, 9))
    C = draw(S.integers(1, 3))
    return dict(in_channels=C, out_channels=draw(S.integers(1, 3)), lmax=draw(S.integers(0, 3)),
                rec=draw(S.integers(0, 2)), transform=draw(S.sampled_from(["quadrature", "lstsq"])),
                bias=draw(S.booleans()), x=_map((draw(S.integers(0, 3)), C, H, W), draw(SEEDS), draw(DTYPES)),
                k=draw(S.integers(0, 3)))


@fuzz("geodl.nn.pose.OrthographicLift", examples=50)
@with_cases(lambda: cases(_ortho_case(), {
    "in_channels": values(*bad_ints(), names=("in_channels", "x")),
    "out_channels": values(*bad_ints()),
    "lmax": values(-1, True, 2.5, "2", None, 10**6),
    "rec": values(-1, 9, True, 1.5, "1", None),
    "transform": values("fft", None, 1),
    "x": tensor_muts("x", shapes={"one channel more": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1, *x.shape[2:]),
                                  "3-D": lambda x: x[:, 0], "empty map": lambda x: x[..., :0]}),
}))
def build_OrthographicLift(in_channels, out_channels, lmax, rec, transform, bias, x, k):
    import torch
    from geodl.nn.pose import OrthographicLift

    def call():
        torch.manual_seed(0)
        lift = OrthographicLift(in_channels, out_channels, lmax, rec=rec, transform=transform, bias=bias).to(_dtype(x))
        return lift, lift(x)

    def verify(res):
        lift, y = res
        expect(y.shape == (x.shape[0], out_channels, (lmax + 1) ** 2), f"shape {tuple(y.shape)}")
        expect(y.dtype == x.dtype, f"dtype {y.dtype}")
        finite(y)
        if x.shape[0] and x.shape[-1] == x.shape[-2] and transform == "quadrature":
            _quarter_turn_oracle(lift, x, y, f"sh:{lmax}", k)

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_pose_lifts"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
