"""Checks shared by the SO(3) distribution and the pose metrics."""

from __future__ import annotations

import torch

from geodl._checks import check_tensor


def _checking(x: torch.Tensor) -> bool:
    """Value checks run on the CPU outside ``torch.compile`` (elsewhere they would force a host sync)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def rotation_tol(dtype: torch.dtype) -> float:
    """Tolerance of the rotation check: ``max(1e-6, 1000 eps)`` (1.2e-4 in float32, 1e-6 in float64)."""
    return max(1e-6, 1000 * torch.finfo(dtype).eps)


def check_rotations(name: str, R, *, shape=(..., 3, 3)) -> torch.Tensor:
    """``R`` a floating tensor of rotation matrices: finite, ``|RᵀR - I| <= tol`` entrywise and
    ``|det R - 1| <= tol`` (tol of :func:`rotation_tol`); ``ValueError`` naming ``name`` otherwise.

    The values are checked on the CPU only (on CUDA a check would synchronise with the host).
    """
    R = check_tensor(name, R, shape=shape, floating=True)
    if not _checking(R) or R.numel() == 0:
        return R
    check_tensor(name, R, finite=True)
    tol = rotation_tol(R.dtype)
    Rd = R.detach().double()
    eye = torch.eye(3, dtype=torch.float64)
    orth = (Rd.transpose(-1, -2) @ Rd - eye).abs().amax(dim=(-2, -1))
    det = torch.linalg.det(Rd)
    bad = (orth > tol) | ((det - 1).abs() > tol)
    if bool(bad.any()):
        where = bad.nonzero().tolist()[:3] if bad.dim() else []
        at = f" at batch positions {where}" if bad.dim() else ""
        worst = int(bad.flatten().nonzero()[0]) if bad.dim() else 0
        o, d = float(orth.flatten()[worst]), float(det.flatten()[worst])
        raise ValueError(f"{name}: not rotation matrices{at} (max |RᵀR - I| = {o:.3g}, det = {d:.6g}; "
                         f"expected orthonormal with det +1 within {tol:.3g})")
    return R
