"""Measured figures for the foundation's must-show items (geodl.groups), printed and written to
``benchmarks/results/groups.json``. The same properties are asserted by ``tests/groups``; this
script records the numbers themselves.

    python benchmarks/groups_report.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from geodl.groups import (
    axis_angle_to_matrix, euler_to_matrix, finite_group, geodesic_distance, matrix_to_6d,
    matrix_to_axis_angle, matrix_to_euler, matrix_to_quaternion, nearest_rotation, quaternion_to_matrix,
    random_rotation, sixd_to_matrix, so3_healpix_grid, wigner_D,
)

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def main() -> dict:
    out: dict = {}
    eye = torch.eye(3, dtype=F64)
    R = random_rotation(100_000, generator=gen(0), dtype=F64)
    theta = geodesic_distance(eye, R).numpy()
    out["haar_ks_pvalue_100k"] = float(stats.kstest(theta, lambda t: (t - np.sin(t)) / np.pi).pvalue)
    out["same_seed_identical"] = bool(torch.equal(random_rotation(1000, generator=gen(7)), random_rotation(1000, generator=gen(7))))

    sizes = {}
    for name in ("tetrahedral", "octahedral", "icosahedral"):
        G = finite_group(name)
        prod = (G[:, None] @ G[None]).reshape(-1, 3, 3)
        # exact elementwise distances (cdist's matrix-multiply formula rounds at ~1e-8)
        d_prod = (prod[:, None] - G[None]).abs().amax(dim=(-1, -2))  # (n*n, n)
        d_self = (G[:, None] - G[None]).abs().amax(dim=(-1, -2))
        closed = bool((d_prod.min(dim=1).values < 1e-9).all())
        distinct = int((d_self < 1e-9).sum(dim=1).eq(1).sum())
        sizes[name] = {"elements": len(G), "distinct": distinct, "closed": closed}
    out["finite_groups"] = sizes

    A, B = random_rotation(200, generator=gen(1), dtype=F64), random_rotation(200, generator=gen(2), dtype=F64)
    hom, orth = 0.0, 0.0
    for l in range(11):
        DA, DB, DAB = wigner_D(l, A), wigner_D(l, B), wigner_D(l, A @ B)
        hom = max(hom, float((DAB - DA @ DB).abs().max()))
        orth = max(orth, float((DA @ DA.transpose(-1, -2) - torch.eye(2 * l + 1, dtype=F64)).abs().max()))
    out["wigner_homomorphism_max_err_l10"] = hom
    out["wigner_orthogonality_max_err_l10"] = orth
    try:
        from e3nn import o3

        old = torch.get_default_dtype()
        torch.set_default_dtype(F64)
        try:
            x = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen(3), dtype=F64), dim=-1)
            Rs = random_rotation(500, generator=gen(4), dtype=F64)
            err_e3nn, err_sh = 0.0, 0.0
            for l in range(11):
                err_e3nn = max(err_e3nn, float((o3.Irrep(l, 1).D_from_matrix(Rs[:20]) - wigner_D(l, Rs[:20])).abs().max()))
                y = o3.spherical_harmonics(l, x, normalize=True)
                yr = o3.spherical_harmonics(l, (Rs @ x[..., None])[..., 0], normalize=True)
                err_sh = max(err_sh, float((yr - (wigner_D(l, Rs) @ y[..., None])[..., 0]).abs().max()))
        finally:
            torch.set_default_dtype(old)
        out["wigner_vs_e3nn_max_err_l10"] = err_e3nn
        out["wigner_on_e3nn_sh_of_rotated_points_max_err_l10"] = err_sh
    except ImportError:
        out["wigner_vs_e3nn_max_err_l10"] = "e3nn not installed"

    grid = {}
    Q = random_rotation(10_000, generator=gen(5), dtype=F64)
    for rec in (0, 1, 2, 3):
        G = so3_healpix_grid(rec, dtype=F64)
        row = {"size": len(G)}
        if rec <= 2:
            row["max_dist_from_10k_random_rad"] = float(geodesic_distance(Q, G[nearest_rotation(Q, G)]).max())
        if rec >= 2:
            nn = nearest_rotation(G, G[torch.randperm(len(G), generator=gen(6))])
            row["distinct"] = int(torch.unique(nn).numel()) == len(G)
        grid[f"rec{rec}"] = row
    out["so3_healpix_grid"] = grid

    # round trips over 100k Haar rotations plus rotations with angles near 0 and near π
    ang = torch.cat([torch.logspace(-12, -1, 500, dtype=F64), math.pi - torch.logspace(-12, -1, 500, dtype=F64)])
    axis = torch.nn.functional.normalize(torch.randn(1000, 3, generator=gen(8), dtype=F64), dim=-1)
    Rall = torch.cat([R, axis_angle_to_matrix(axis * ang[:, None])])
    out["round_trip_max_err"] = {
        "quaternion": float((quaternion_to_matrix(matrix_to_quaternion(Rall)) - Rall).abs().max()),
        "axis_angle": float((axis_angle_to_matrix(matrix_to_axis_angle(Rall)) - Rall).abs().max()),
        "6d": float((sixd_to_matrix(matrix_to_6d(Rall)) - Rall).abs().max()),
        "euler_zyz": float((euler_to_matrix(matrix_to_euler(Rall)) - Rall).abs().max()),
    }
    return out


if __name__ == "__main__":
    res = main()
    print(json.dumps(res, indent=2))
    path = Path(__file__).resolve().parent / "results" / "groups.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {path}")
