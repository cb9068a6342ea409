"""Shared pieces of the TinvNN tests: generic clouds, symmetric clouds, the report's error table."""

from __future__ import annotations

import math

import torch
from backbone_helpers import Reshape  # noqa: F401 (re-exported to the tinv tests)

F64 = torch.float64
BOUND = {torch.float32: 1e-5, F64: 1e-10}  # the bounds on the invariance errors


def cloud(n, seed=0, d=3, dtype=F64):
    """A generic cloud: anisotropic (distinct eigenvalues), skewed (well-defined signs), off-centre."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64) * torch.arange(d, 0, -1, dtype=F64)
    return (x + 0.5 * x**2 / d + 0.3).to(dtype)


def two_clouds(dtype=F64):
    pos = torch.cat([cloud(12, 0, dtype=dtype), cloud(15, 1, dtype=dtype)])
    batch = torch.tensor([0] * 12 + [1] * 15)
    return pos, batch


def error_rows(report):
    """``{element: max rel. error}`` from the equivariance item's table of a ModuleReport."""
    table = report.items["equivariance"][1].splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("output"))
    rows = {}
    for line in table[head + 2:]:
        if line.startswith(("PASSED", "FAILED")):
            break
        parts = line.split()
        rows[parts[2]] = (float(parts[4]), parts[6])
    return rows


def assert_bounded(report, dtype, elements=("reflection", "translation", "perm", "scale", "haar", "rotation")):
    rows = error_rows(report)
    assert set(elements) <= set(rows), rows
    for el in elements:
        err, status = rows[el]
        assert status == "ok" and err <= BOUND[dtype], (el, err, report.items["equivariance"][1])
    return rows


def cube(n_side=3):
    """Points of a cubic grid: isotropic covariance, centrally symmetric."""
    t = torch.linspace(-1, 1, n_side, dtype=F64)
    return torch.cartesian_prod(t, t, t)


def cylinder(n_angle=12, n_height=5):
    a = torch.arange(n_angle, dtype=F64) * (2 * math.pi / n_angle)
    h = torch.linspace(-1, 1, n_height, dtype=F64)
    A, H = torch.meshgrid(a, h, indexing="ij")
    return torch.stack([torch.cos(A), torch.sin(A), H], -1).reshape(-1, 3)


def sphere(k=2, seed=0):
    """Points on the unit sphere: ``k`` random directions and their images under the 48 signed
    permutations (the cube's symmetry group): isotropic covariance, centrally symmetric."""
    import itertools

    g = torch.Generator().manual_seed(seed)
    p = torch.nn.functional.normalize(torch.randn(k, 3, generator=g, dtype=F64), dim=1)
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=F64)
            m[range(3), perm] = torch.tensor(signs, dtype=F64)
            mats.append(m)
    return torch.cat([p @ m.T for m in mats])
