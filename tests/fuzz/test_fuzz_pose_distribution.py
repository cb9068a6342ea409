"""Fuzz of :mod:`geodl.nn.pose` and of the chunked Wigner-D of :mod:`geodl.groups` (entries registered with
``@fuzz`` in this file), on tiny grids (levels 0 and 1: 72 and 576 rotations) and degrees up to 3: the
chunked Wigner-D against ``wigner_D_blocks``; the distribution's ``log_prob`` against the unchunked
formula and its probabilities against a sum of 1, ``mode``/``sample`` against being rotations; the
metrics against brute-force loops over the symmetry set and the IPDF average against a per-rotation loop."""

from __future__ import annotations

import math

import pytest

from ._harness import HUGE, REGISTRY, Mut, bad_ints, cases, check_entry, close, expect, finite, fuzz, st
from ._harness import tensor_muts, values, with_cases

S = st()
SEEDS = S.integers(0, 2**31 - 1)
DTYPES = S.sampled_from(["float64", "float32"])


def _rotations(shape, seed, dtype="float64"):
    import torch
    from geodl.groups import random_rotation

    return random_rotation(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(getattr(torch, dtype))


def _width(lmax):
    return (lmax + 1) * (2 * lmax + 1) * (2 * lmax + 3) // 3


def _coeffs(B, lmax, seed, dtype="float64", scale=0.5):
    import torch

    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, _width(lmax), generator=g, dtype=torch.float64) * scale).to(getattr(torch, dtype))


def _tol(t):
    import torch

    return 1e-9 if t.dtype == torch.float64 else 3e-4


def _not_rotation_muts(arg, names=()):
    import torch

    return tensor_muts(arg, shapes={"(..., 3, 4)": lambda x: x.new_zeros(x.shape[:-1] + (4,)),
                                    "(3,)": lambda x: x.new_zeros(3)}, names=names) + [
        Mut("scaled by 1.01", lambda kw: kw[arg] * 1.01 if kw[arg].numel() else None, names=names),
        Mut("a reflection", lambda kw: kw[arg] * torch.tensor([1.0, 1.0, -1.0], dtype=kw[arg].dtype)
            if kw[arg].numel() else None, names=names),
    ]


def _flat_ref(lmax, R):
    import torch
    from geodl.groups import wigner_D_blocks

    return torch.cat([b.flatten(-2) for b in wigner_D_blocks(lmax, R)], -1)


# ------------------------------------------------------------------------------------------- wigner_D_chunks
@S.composite
def _chunks_case(draw):
    n = draw(S.integers(0, 40))
    return dict(lmax=draw(S.integers(0, 3)), R=_rotations((n,), draw(SEEDS), draw(DTYPES)),
                chunk_size=draw(S.integers(1, 50)))


@fuzz("geodl.groups.wigner_D_chunks", examples=40)
@with_cases(lambda: cases(_chunks_case(), {
    "lmax": values(-1, True, 2.5, "2", None, HUGE),
    "R": tensor_muts("R", shapes={"(..., 3, 4)": lambda x: x.new_zeros(x.shape[:-1] + (4,))}),
    "chunk_size": values(*bad_ints()),
}))
def build_wigner_D_chunks(lmax, R, chunk_size):
    import torch
    from geodl.groups import wigner_D_chunks

    def call():
        return list(wigner_D_chunks(lmax, R, chunk_size))

    def verify(parts):
        n = R.reshape(-1, 3, 3).shape[0]
        expect([s for s, _ in parts] == list(range(0, n, chunk_size)), "chunk starts")
        if not parts:
            expect(n == 0, "no chunks for a non-empty batch")
            return
        D = torch.cat([d for _, d in parts])
        expect(D.dtype == R.dtype, f"dtype {D.dtype}")
        finite(D)
        close(D, _flat_ref(lmax, R.reshape(-1, 3, 3)), atol=_tol(R), msg="chunks vs wigner_D_blocks")

    return call, verify


@fuzz("geodl.groups.so3_fourier_width", examples=15)
@with_cases(lambda: cases(S.fixed_dictionaries({"lmax": S.integers(0, 300)}), {"lmax": values(-1, True, 2.5, "2", None)}))
def build_so3_fourier_width(lmax):
    from geodl.groups import so3_fourier_width

    def call():
        return so3_fourier_width(lmax)

    def verify(w):
        expect(w == sum((2 * l + 1) ** 2 for l in range(lmax + 1)), f"width {w}")

    return call, verify


# ------------------------------------------------------------------------------------------- SO3Distribution
@S.composite
def _dist_case(draw):
    B, lmax, dtype, seed = draw(S.integers(1, 3)), draw(S.integers(0, 3)), draw(DTYPES), draw(SEEDS)
    return dict(coeffs=_coeffs(B, lmax, seed, dtype, scale=draw(S.sampled_from([0.0, 0.5, 3.0]))), lmax=lmax,
                rec=draw(S.integers(0, 1)), chunk_size=draw(S.sampled_from([None, 1, 50, 100, 1000])),
                R=_rotations((B, draw(S.integers(1, 3))) if draw(S.booleans()) else (B,), seed + 1, dtype),
                method=draw(S.sampled_from(["log_prob", "probs", "mode", "sample", "cross_entropy"])))


@fuzz("geodl.nn.pose.SO3Distribution", examples=60)
@with_cases(lambda: cases(_dist_case(), {
    "coeffs": tensor_muts("coeffs", shapes={"one column more": lambda x: x.new_zeros(x.shape[0], x.shape[1] + 1),
                                            "1-D": lambda x: x[0]}, names=("coeffs", "lmax")),
    "lmax": values(-1, True, 2.5, "2", None) + [Mut("one more", lambda kw: kw["lmax"] + 1, names=("coeffs", "lmax"))],
    "rec": values(-1, 9, True, 1.5, "1", None),
    "chunk_size": values(0, -1, True, 2.5, "3"),
    "R": _not_rotation_muts("R", names=("R", "R_true")),
}))
def build_SO3Distribution(coeffs, lmax, rec, chunk_size, R, method):
    import torch
    from geodl.groups import nearest_rotation, so3_healpix_grid
    from geodl.nn.pose import SO3Distribution

    def call():
        dist = SO3Distribution(coeffs, lmax, rec=rec, chunk_size=chunk_size)
        dist.logits(R)  # every case checks R, whichever method it then calls
        if method == "log_prob":
            return dist, dist.log_prob(R)
        if method == "probs":
            return dist, dist.probs()
        if method == "mode":
            return dist, dist.mode(steps=5)
        if method == "sample":
            return dist, dist.sample(3, generator=torch.Generator().manual_seed(0), jitter=True)
        return dist, dist.cross_entropy(R if R.dim() == 3 else R[:, 0], reduction="none")

    def verify(res):
        dist, out = res
        c = coeffs.double()
        G = so3_healpix_grid(rec, dtype=torch.float64)
        logits = c @ _flat_ref(lmax, G).T
        finite(out)
        tol = _tol(coeffs) * (1 + float(c.abs().sum(-1).max()))
        if method == "log_prob":
            f = torch.einsum("bw,bsw->bs", c, _flat_ref(lmax, R.double().reshape(R.shape[0], -1, 3, 3))).reshape(R.shape[:-2])
            ref = f - torch.logsumexp(logits, -1).reshape(-1, *([1] * (f.dim() - 1))) + math.log(G.shape[0]) - math.log(math.pi**2)
            close(out, ref, atol=tol, msg="log_prob vs unchunked formula")
        elif method == "probs":
            close(out.sum(-1), torch.ones(out.shape[0], dtype=out.dtype), atol=tol, msg="probabilities sum")
            close(out, torch.softmax(logits, -1), atol=tol, msg="probs vs softmax")
        elif method in ("mode", "sample"):
            Rd = out.double()
            close(Rd.transpose(-1, -2) @ Rd, torch.eye(3, dtype=torch.float64).expand(Rd.shape), atol=tol, msg="rotation")
            if method == "mode":  # at least as good as the grid's best
                f = torch.einsum("bw,bw->b", c, _flat_ref(lmax, Rd))
                expect(bool((f >= logits.amax(-1) - tol).all()), "mode below the grid maximum")
        else:
            Rt = (R if R.dim() == 3 else R[:, 0]).double()
            idx = nearest_rotation(Rt, G)
            ref = -torch.log_softmax(logits, -1)[torch.arange(len(idx)), idx]
            close(out, ref, atol=tol, msg="cross-entropy")

    return call, verify


# ------------------------------------------------------------------------------------------- metrics
@S.composite
def _errors_case(draw):
    from geodl.groups import finite_group

    B, dtype, seed = draw(S.integers(0, 4)), draw(DTYPES), draw(SEEDS)
    kind = draw(S.sampled_from(["none", "shared", "per-sample", "set"]))
    K = draw(S.integers(1, 3)) if kind == "set" else None
    R_true = _rotations((B, K) if K else (B,), seed + 1, dtype)
    sym = None
    if kind in ("shared", "per-sample"):
        sym = finite_group(draw(S.sampled_from(["tetrahedral", "octahedral"]))).to(R_true.dtype)
        if kind == "per-sample":
            sym = sym[None].expand(B, -1, -1, -1).contiguous()
    return dict(R_pred=_rotations((B,), seed, dtype), R_true=R_true, symmetries=sym)


@fuzz("geodl.nn.pose.rotation_errors", examples=40)
@with_cases(lambda: cases(_errors_case(), {"R_pred": _not_rotation_muts("R_pred"), "R_true": _not_rotation_muts("R_true"),
                                           "symmetries": [Mut("scaled", lambda kw: kw["symmetries"] * 1.01)]
                                           + values("abc", 3)}))
def build_rotation_errors(R_pred, R_true, symmetries):
    import torch
    from geodl.groups import geodesic_distance
    from geodl.nn.pose import rotation_errors

    def call():
        return rotation_errors(R_pred, R_true, symmetries)

    def verify(e):
        B = R_pred.shape[0]
        expect(e.shape == (B,), f"shape {tuple(e.shape)}")
        finite(e)
        sets = R_true if R_true.dim() == 4 else R_true[:, None]
        ref = torch.zeros(B, dtype=torch.float64)
        for b in range(B):
            cands = [sets[b, k].double() @ (torch.eye(3, dtype=torch.float64) if symmetries is None else
                                            (symmetries if symmetries.dim() == 3 else symmetries[b])[s].double())
                     for k in range(sets.shape[1]) for s in range(1 if symmetries is None else symmetries.shape[-3])]
            ref[b] = min(math.degrees(float(geodesic_distance(R_pred[b].double(), c))) for c in cands)
        close(e, ref, atol=1e-6 if R_pred.dtype == torch.float64 else 0.05, msg="min over the set")

    return call, verify


def _errors_valid():
    return S.builds(lambda n, seed, dtype: dict(errors=_rotations((n,), seed, dtype)[:, 0, 0].abs() * 90),
                    S.integers(1, 20), SEEDS, DTYPES)


_ERROR_MUTS = {"errors": tensor_muts("errors", shapes={"2-D": lambda x: x[None], "empty": lambda x: x[:0]})
               + [Mut("negative", lambda kw: -kw["errors"] - 1)]}


@fuzz("geodl.nn.pose.median_error", examples=25)
@with_cases(lambda: cases(_errors_valid(), _ERROR_MUTS))
def build_median_error(errors):
    import numpy as np
    from geodl.nn.pose import median_error

    def call():
        return median_error(errors)

    def verify(m):
        import torch

        close(m.double(), torch.tensor(float(np.median(errors.double().numpy())), dtype=torch.float64), atol=1e-5, msg="median")

    return call, verify


@fuzz("geodl.nn.pose.accuracy_at", examples=25)
@with_cases(lambda: cases(S.builds(lambda kw, d: dict(kw, degrees=d), _errors_valid(),
                                   S.sampled_from([15, 30.0, (15, 30), [0.0, 90.0, 180.0]])),
                          dict(_ERROR_MUTS, degrees=values(-1.0, float("nan"), "15", None, (), (15, -3)))))
def build_accuracy_at(errors, degrees):
    import torch
    from geodl.nn.pose import accuracy_at

    def call():
        return accuracy_at(errors, degrees)

    def verify(a):
        th = list(degrees) if isinstance(degrees, (tuple, list)) else [degrees]
        ref = torch.tensor([float((errors.double() <= t).double().mean()) for t in th], dtype=torch.float64)
        close(a.double(), ref if isinstance(degrees, (tuple, list)) else ref[0], atol=1e-6, msg="fractions")

    return call, verify


@S.composite
def _all_case(draw):
    B, lmax, dtype, seed = draw(S.integers(1, 3)), draw(S.integers(0, 2)), draw(DTYPES), draw(SEEDS)
    form = draw(S.sampled_from(["(B,3,3)", "(B,K,3,3)", "list"]))
    if form == "list":
        sets = [_rotations((draw(S.integers(1, 4)),), seed + 10 + b, dtype) for b in range(B)]
    else:
        sets = _rotations((B, draw(S.integers(1, 4))) if form == "(B,K,3,3)" else (B,), seed + 1, dtype)
    return dict(coeffs=_coeffs(B, lmax, seed, dtype), lmax=lmax, R_sets=sets, one_random=draw(S.booleans()),
                seed=draw(S.integers(0, 5)))


@fuzz("geodl.nn.pose.average_log_likelihood", examples=40)
@with_cases(lambda: cases(_all_case(), {
    "R_sets": [Mut("scaled", lambda kw: (kw["R_sets"] * 1.01) if not isinstance(kw["R_sets"], list) else
                   [r * 1.01 for r in kw["R_sets"]]),
               Mut("a list one short", lambda kw: list(kw["R_sets"])[:-1] if isinstance(kw["R_sets"], list) else None)]
    + values("abc", None),
    "one_random": values("yes", 1, None),
}))
def build_average_log_likelihood(coeffs, lmax, R_sets, one_random, seed):
    import torch
    from geodl.nn.pose import SO3Distribution, average_log_likelihood

    def call():
        dist = SO3Distribution(coeffs, lmax, rec=0)
        kw = dict(one_random=one_random, generator=torch.Generator().manual_seed(seed)) if one_random is not False else {}
        return dist, average_log_likelihood(dist, R_sets, reduction="none", **kw)

    def verify(res):
        dist, per = res
        finite(per)
        sets = list(R_sets) if isinstance(R_sets, list) else list(R_sets if R_sets.dim() == 4 else R_sets[:, None])
        lps = [[float(dist.log_prob(s[k][None, None].expand(dist.batch_size, 1, 3, 3))[b, 0]) for k in range(s.shape[0])]
               for b, s in enumerate(sets)]
        tol = 1e-8 if coeffs.dtype == torch.float64 else 1e-3
        if one_random:
            expect(all(min(abs(float(per[b]) - v) for v in lp) < tol for b, lp in enumerate(lps)), "not a member's value")
        else:
            close(per.double(), torch.tensor([sum(lp) / len(lp) for lp in lps], dtype=torch.float64), atol=tol,
                  msg="mean over the set")

    return call, verify


@S.composite
def _spread_case(draw):
    B, lmax, dtype, seed = draw(S.integers(1, 3)), draw(S.integers(0, 2)), draw(DTYPES), draw(SEEDS)
    sets = _rotations((B, draw(S.integers(1, 4))) if draw(S.booleans()) else (B,), seed + 1, dtype)
    return dict(coeffs=_coeffs(B, lmax, seed, dtype), lmax=lmax, R_sets=sets, chunk_size=draw(S.integers(1, 100)))


@fuzz("geodl.nn.pose.spread", examples=30)
@with_cases(lambda: cases(_spread_case(), {
    "R_sets": [Mut("scaled", lambda kw: kw["R_sets"] * 1.01)] + values("abc", None),
    "chunk_size": values(0, -3, 1.5, None),
}))
def build_spread(coeffs, lmax, R_sets, chunk_size):
    import torch
    from geodl.nn.pose import SO3Distribution, spread

    def call():
        dist = SO3Distribution(coeffs, lmax, rec=0)
        return dist, spread(dist, R_sets, chunk_size=chunk_size, reduction="none")

    def verify(res):
        dist, per = res
        finite(per)
        expect(bool(((per >= 0) & (per <= 180 + 1e-9)).all()), "an expected angle outside [0, 180] degrees")
        sets = R_sets if R_sets.dim() == 4 else R_sets[:, None]
        G, p = dist.grid.double(), dist.probs().double()
        tr = torch.einsum("nij,bsij->bns", G, sets.double()).amax(-1)
        ref = torch.rad2deg((p * torch.arccos(((tr - 1) / 2).clamp(-1, 1))).sum(1))
        close(per.double(), ref, atol=1e-6 if coeffs.dtype == torch.float64 else 1e-2, msg="the definition")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_pose_distribution"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
