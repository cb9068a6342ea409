"""Fuzz of the S2 / SO(3) convolutions and the SO(3) activation of :mod:`geodl.nn.pose` (entries registered with
``@fuzz`` in this file), at degrees up to 3 and on grids of levels 0 and 1: outputs against the per-degree formulas
(``F^l = Σ_c (Q x^l_c) ψ^l_cᵀ``, ``F^l Ψ^l``, least squares of ``σ`` on the grid), shapes, finiteness."""

from __future__ import annotations

import math

import pytest

from ._harness import HUGE, REGISTRY, Mut, bad_ints, cases, check_entry, close, expect, finite, fuzz, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
DTYPES = S.sampled_from(["float64", "float32"])


def _width(lmax):
    return (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3


def _randn(shape, seed, dtype):
    import torch

    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(getattr(torch, dtype))


def _tol(x, scale=1.0):
    import torch

    return (1e-9 if x.dtype == torch.float64 else 3e-4) * (1 + scale)


def _dt(x):
    """The module dtype of a case: the input's when it is a floating tensor (broken inputs keep float64)."""
    import torch

    return x.dtype if isinstance(x, torch.Tensor) and x.is_floating_point() else torch.float64


def _x_muts(names=("x",)):
    return tensor_muts("x", shapes={"one column more": lambda x: x.new_zeros(*x.shape[:-1], x.shape[-1] + 1),
                                    "2-D": lambda x: x[:, 0], "one channel more": lambda x: x.new_zeros(
                                        x.shape[0], x.shape[1] + 1, x.shape[2])}, names=names)


def _blocks_mul(x, psi, lmax, left):
    """Reference per degree: left = x^l (B,C,k) outer psi (C,O,k); else F (B,C,k,k) @ Psi (C,O,k,k)."""
    import torch

    out, i = [], 0
    for l in range(lmax + 1):
        k = 2 * l + 1
        if left:
            a, p = x[..., l * l:(l + 1) ** 2], psi[..., l * l:(l + 1) ** 2]
            out.append(torch.einsum("bcm,con->bomn", a, p).flatten(-2))
        else:
            F, P = x[..., i:i + k * k].unflatten(-1, (k, k)), psi[..., i:i + k * k].unflatten(-1, (k, k))
            out.append(torch.einsum("bcmn,conp->bomp", F, P).flatten(-2))
        i += k * k
    return torch.cat(out, -1)


# ------------------------------------------------------------------------------------------- S2Conv
@S.composite
def _s2_case(draw):
    lmax, dtype, seed = draw(S.integers(0, 3)), draw(DTYPES), draw(SEEDS)
    cin, cout, B = draw(S.integers(1, 3)), draw(S.integers(1, 3)), draw(S.integers(0, 3))
    grid = draw(S.sampled_from([None, "sh", "points"]))
    return dict(in_channels=cin, out_channels=cout, lmax=lmax, basis=draw(S.sampled_from(["real", "e3nn"])),
                kernel_grid=_randn((draw(S.integers(1, 5)), 3), seed + 1, "float64") if grid == "points" else grid,
                x=_randn((B, cin, (lmax + 1) ** 2), seed, dtype))


@fuzz("geodl.nn.pose.S2Conv", examples=40)
@with_cases(lambda: cases(_s2_case(), {
    "x": _x_muts(),
    "lmax": values(-1, True, 2.5, "2", None, HUGE) + [Mut("one more", lambda kw: kw["lmax"] + 1, names=("x", "lmax"))],
    "in_channels": values(*bad_ints()),
    "out_channels": values(*bad_ints()),
    "basis": values("complex", None, 1),
    "kernel_grid": values("points", 3) + [Mut("zero vector", lambda kw: __import__("torch").zeros(2, 3)),
                                           Mut("(K, 2)", lambda kw: __import__("torch").ones(2, 2))],
}))
def build_S2Conv(in_channels, out_channels, lmax, basis, kernel_grid, x):
    import torch
    from geodl.groups import wigner_D_blocks
    from geodl.nn.pose import S2Conv

    def call():
        torch.manual_seed(0)
        m = S2Conv(in_channels, out_channels, lmax, kernel_grid=kernel_grid, basis=basis).to(_dt(x))
        return m, m(x)

    def verify(res):
        m, out = res
        expect(out.shape == (x.shape[0], out_channels, _width(lmax)), f"shape {tuple(out.shape)}")
        finite(out)
        xd = x.double()
        if basis == "real":
            P = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
            xd = xd @ torch.block_diag(*wigner_D_blocks(lmax, P)).T
        psi = m.kernel().detach().double()
        ref = _blocks_mul(xd, psi, lmax, left=True)
        close(out, ref, atol=_tol(x, float(ref.abs().max()) if ref.numel() else 0.0), msg="outer-product formula")

    return call, verify


# ------------------------------------------------------------------------------------------- SO3Conv
@S.composite
def _so3_case(draw):
    from geodl.groups import random_rotation
    import torch

    lmax, dtype, seed = draw(S.integers(0, 3)), draw(DTYPES), draw(SEEDS)
    cin, cout, B = draw(S.integers(1, 3)), draw(S.integers(1, 3)), draw(S.integers(0, 3))
    grid = random_rotation(draw(S.integers(1, 4)), generator=torch.Generator().manual_seed(seed + 1),
                           dtype=torch.float64) if draw(S.booleans()) else None
    return dict(in_channels=cin, out_channels=cout, lmax=lmax, kernel_grid=grid, x=_randn((B, cin, _width(lmax)), seed, dtype))


@fuzz("geodl.nn.pose.SO3Conv", examples=40)
@with_cases(lambda: cases(_so3_case(), {
    "x": _x_muts(),
    "lmax": values(-1, True, 2.5, "2", None, HUGE) + [Mut("one more", lambda kw: kw["lmax"] + 1, names=("x", "lmax"))],
    "in_channels": values(*bad_ints()),
    "out_channels": values(*bad_ints()),
    "kernel_grid": values("sh", 3) + [Mut("scaled", lambda kw: __import__("torch").eye(3)[None] * 1.1),
                                      Mut("empty", lambda kw: __import__("torch").zeros(0, 3, 3))],
}))
def build_SO3Conv(in_channels, out_channels, lmax, kernel_grid, x):
    import torch
    from geodl.nn.pose import SO3Conv

    def call():
        torch.manual_seed(0)
        m = SO3Conv(in_channels, out_channels, lmax, kernel_grid=kernel_grid).to(_dt(x))
        return m, m(x)

    def verify(res):
        m, out = res
        expect(out.shape == (x.shape[0], out_channels, _width(lmax)), f"shape {tuple(out.shape)}")
        finite(out)
        ref = _blocks_mul(x.double(), m.kernel().detach().double(), lmax, left=False)
        close(out, ref, atol=_tol(x, float(ref.abs().max()) if ref.numel() else 0.0), msg="block product formula")

    return call, verify


# ------------------------------------------------------------------------------------------- SO3Activation
@S.composite
def _act_case(draw):
    lin, lout, dtype, seed = draw(S.integers(0, 2)), draw(S.integers(0, 2)), draw(DTYPES), draw(SEEDS)
    return dict(lmax_in=lin, lmax_out=lout, act=draw(S.sampled_from(["relu", "tanh", "gelu", "abs"])),
                rec=draw(S.sampled_from([None, 0, 1])) if max(lin, lout) <= 2 else 1,
                transform=draw(S.sampled_from(["lstsq", "quadrature"])), normalize2mom=draw(S.booleans()),
                x=_randn((draw(S.integers(0, 3)), draw(S.integers(1, 2)), _width(lin)), seed, dtype))


@fuzz("geodl.nn.pose.SO3Activation", examples=30)
@with_cases(lambda: cases(_act_case(), {
    "x": tensor_muts("x", shapes={"one column more": lambda x: x.new_zeros(*x.shape[:-1], x.shape[-1] + 1),
                                  "2-D": lambda x: x[:, 0]}),
    "lmax_in": values(-1, True, 2.5, "2", None, HUGE),
    "lmax_out": values(-1, True, 2.5, None, HUGE),
    "act": values("swish", None, 3),
    "rec": values(-1, 9, True, 1.5, "1"),
    "transform": values("fft", None),
    "normalize2mom": values("yes", 1, None),
}))
def build_SO3Activation(lmax_in, lmax_out, act, rec, transform, normalize2mom, x):
    import torch
    from geodl.groups import so3_healpix_grid
    from geodl.groups._wigner_grid import _flat_blocks
    from geodl.nn.pose import SO3Activation

    def call():
        m = SO3Activation(lmax_in, lmax_out, act, rec=rec, transform=transform, normalize2mom=normalize2mom).to(_dt(x))
        return m, m(x)

    def verify(res):
        m, out = res
        expect(out.shape == (*x.shape[:2], _width(lmax_out)), f"shape {tuple(out.shape)}")
        finite(out)
        G = so3_healpix_grid(m.rec, dtype=torch.float64)
        fn = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu, "abs": torch.abs}[act]
        vals = fn(x.double() @ _flat_blocks(lmax_in, G).T) * m.scale
        D = _flat_blocks(lmax_out, G)
        if transform == "lstsq":
            ref = vals @ torch.linalg.pinv(D).T
        else:
            dims = torch.cat([torch.full(((2 * l + 1) ** 2,), 2.0 * l + 1, dtype=torch.float64) for l in range(lmax_out + 1)])
            ref = vals @ D * dims / G.shape[0]
        close(out, ref, atol=_tol(x, float(vals.abs().max()) * 10 if vals.numel() else 0.0), msg="grid transform")
        if normalize2mom:
            expect(abs(m.scale - {"relu": math.sqrt(2)}.get(act, m.scale)) < 1e-6, f"scale {m.scale}")

    return call, verify


# ------------------------------------------------------------------------------------------- s2_near_pole_grid
@fuzz("geodl.nn.pose.s2_near_pole_grid", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({"n_alpha": S.integers(1, 10), "n_beta": S.integers(1, 5),
                                                "max_beta": S.floats(0.01, math.pi)}),
                          {"n_alpha": values(*bad_ints()), "n_beta": values(*bad_ints()),
                           "max_beta": values(0.0, -1.0, 4.0, float("nan"), "1", None, True)}))
def build_s2_near_pole_grid(n_alpha, n_beta, max_beta):
    import torch
    from geodl.nn.pose import s2_near_pole_grid

    def call():
        return s2_near_pole_grid(n_alpha, n_beta, max_beta, dtype=torch.float64)

    def verify(g):
        expect(g.shape == (n_alpha * n_beta, 3), f"shape {tuple(g.shape)}")
        close(g.norm(dim=-1), torch.ones(g.shape[0], dtype=torch.float64), atol=1e-12, msg="unit vectors")
        beta = torch.arccos(g[:, 2].clamp(-1, 1))
        expect(bool((beta <= max_beta + 1e-9).all() and (beta > 0).all()), "polar angles outside (0, max_beta]")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_pose_convs"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
