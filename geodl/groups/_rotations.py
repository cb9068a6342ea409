"""Rotations: Haar sampling, geodesic distance and conversions between parametrisations.

Conventions (shared by all of ``geodl``):

- rotation matrices act on column vectors, ``x' = R @ x``; any number of leading batch dims ``(..., 3, 3)``;
- quaternions are ``(x, y, z, w)`` (scalar last, as in roma);
- axis-angle is the rotation vector ``angle * unit_axis`` with ``angle`` in ``[0, pi]``;
- 6D is the first two columns of ``R``, concatenated: ``(R[:, 0], R[:, 1])`` -> ``(..., 6)``;
- Euler angles follow scipy/roma: upper-case axes are intrinsic, lower-case extrinsic; the default
  ``"ZYZ"`` means ``R = Rz(phi) @ Ry(theta) @ Rz(psi)`` for ``angles = (phi, theta, psi)``.

roma does the work where it is accurate to float64 round-off (checked in ``tests/groups``); two
places are done differently, see the comments in :func:`axis_angle_to_matrix` and
:func:`matrix_to_euler`.

Range: every finite input gives a finite result. Norms are taken after scaling by a power of two
(exact: the result is bit for bit what the unscaled formula gives wherever that one neither
overflows nor underflows), so quaternions and 6D columns of norm 1e-30 or 1e30 in float32 are
fine, and rotation angles up to the largest finite value are rotations by exactly that angle.
Inputs that define no rotation (a zero quaternion, a zero or collinear pair of 6D columns) raise
``ValueError`` on the CPU; on CUDA they are not checked (no host synchronisation) and give NaN.
"""

from __future__ import annotations

import math

import torch

from geodl._checks import check_memory, check_tensor

__all__ = [
    "random_rotation",
    "random_rotation_2d",
    "random_quaternion",
    "rotation_2d",
    "geodesic_distance",
    "matrix_to_quaternion",
    "quaternion_to_matrix",
    "matrix_to_axis_angle",
    "axis_angle_to_matrix",
    "matrix_to_6d",
    "sixd_to_matrix",
    "matrix_to_euler",
    "euler_to_matrix",
]

_EULER_AXES = set("xyz")


def _shape(shape) -> tuple[int, ...]:
    """Accept ``f(2, 3)``, ``f((2, 3))`` and ``f(torch.Size([2, 3]))``."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise TypeError(f"shape: expected non-negative ints, got {shape!r}")
    return tuple(shape)


def _dtype(dtype):
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if isinstance(dtype, str):  # the hint shared by every generator of geodl.groups and geodl.data
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got the string {dtype!r}; "
                        f"pass torch.{dtype.removeprefix('torch.')} instead")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _check_size(shape: tuple[int, ...], per_sample: int, dtype, device) -> None:
    """``ValueError`` naming ``shape`` when ``per_sample`` values per sample would not fit in memory."""
    check_memory("shape", shape, math.prod(shape) * per_sample * dtype.itemsize,
                 torch.device("cpu") if device is None else device,
                 what=f"{math.prod(shape)} samples of {per_sample} {dtype} values")


def _check_values(name: str, x, shape) -> torch.Tensor:
    # Value checks (NaN/inf) only on the CPU and outside torch.compile: on CUDA they would force a
    # host sync (docs/architecture.md, conventions), under compile a graph break.
    x = check_tensor(name, x, shape=shape, floating=True)
    return check_tensor(name, x, finite=_checking(x))


def _pow2_unscale(x: torch.Tensor) -> torch.Tensor:
    """``x (..., k)`` divided by a power of two near its largest magnitude along the last axis.

    A power of two makes the division exact, so a norm or a normalisation of the result equals the
    one of ``x`` bit for bit where that neither overflows nor underflows, and never does either itself
    (rows of zeros are returned as they are).
    """
    big = x.abs().amax(dim=-1, keepdim=True)
    _, exp = torch.frexp(big)
    lowest = int(math.log2(torch.finfo(x.dtype).tiny)) + 2  # 2**-lowest stays finite for subnormal rows
    return torch.ldexp(x, -exp.clamp_min(lowest).to(x.dtype))


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """``vector_norm(x, dim=-1)``, rescaled where the plain sum of squares overflows (bit-identical elsewhere)."""
    n = torch.linalg.vector_norm(x, dim=-1)
    big = x.abs().amax(dim=-1)
    scaled = big * torch.linalg.vector_norm(x / torch.where(big > 0, big, 1.0)[..., None], dim=-1)
    return torch.where(torch.isfinite(n), n, scaled)


def _checking(x: torch.Tensor) -> bool:
    """Whether value checks run: on the CPU, outside ``torch.compile`` (elsewhere they would sync)."""
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def _raise_where(name: str, bad: torch.Tensor, what: str) -> None:
    if bool(bad.any()):
        where = bad.nonzero().tolist()[:5] if bad.dim() else []
        at = f" at batch positions {where}" if bad.dim() else ""
        raise ValueError(f"{name}: {what}{at}; such an input defines no rotation")


def _rotvec_to_unitquat(v: torch.Tensor) -> torch.Tensor:
    """roma's ``rotvec_to_unitquat`` with an overflow-free norm (the same bits for ordinary angles)."""
    from roma.mappings import sinc

    norms = _safe_norm(v)
    scale = sinc(norms / 2) / 2.0
    return torch.cat((scale[..., None] * v, torch.cos(norms / 2)[..., None]), dim=-1)


def random_quaternion(*shape, generator=None, dtype=None, device=None) -> torch.Tensor:
    """Haar-uniform unit quaternions ``(x, y, z, w)`` (Shoemake's method, via roma).

    Parameters
    ----------
    *shape : int
        Batch shape (ints or one tuple); empty for a single quaternion.
    generator : torch.Generator, optional
        Source of randomness; the same seed gives the same samples.
    dtype, device : optional
        Default: torch's default dtype, CPU.

    Returns
    -------
    Tensor of shape ``(*shape, 4)``.

    Examples
    --------
    >>> q = random_quaternion(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> q.shape, bool(torch.allclose(q.norm(dim=-1), torch.ones(5, dtype=torch.float64)))
    (torch.Size([5, 4]), True)
    """
    import roma

    shape, dtype = _shape(shape), _dtype(dtype)
    _check_size(shape, 4, dtype, device)
    return roma.random_unitquat(shape, dtype=dtype, device=device, generator=generator)


def random_rotation(*shape, generator=None, dtype=None, device=None) -> torch.Tensor:
    """Haar-uniform random rotation matrices in SO(3).

    The rotation angle θ of the samples has density ``(1 - cos θ) / π`` on ``[0, π]``.

    Parameters
    ----------
    *shape : int
        Batch shape (ints or one tuple); ``random_rotation()`` gives one ``(3, 3)`` matrix.
    generator : torch.Generator, optional
        Source of randomness (must live on ``device``); the same seed gives the same samples.
    dtype, device : optional
        Default: torch's default dtype, CPU.

    Returns
    -------
    Tensor of shape ``(*shape, 3, 3)``, orthogonal with determinant +1.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> R = random_rotation(2, 4, generator=g, dtype=torch.float64)
    >>> R.shape
    torch.Size([2, 4, 3, 3])
    >>> bool(torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64)))
    True
    """
    _check_size(_shape(shape), 4 + 9, _dtype(dtype), device)  # the quaternions, then the matrices
    return quaternion_to_matrix(random_quaternion(*shape, generator=generator, dtype=dtype, device=device))


def rotation_2d(angle: torch.Tensor) -> torch.Tensor:
    """2D rotation matrices ``[[cos, -sin], [sin, cos]]`` for angles of shape ``(...)`` -> ``(..., 2, 2)``.

    Examples
    --------
    >>> rotation_2d(torch.tensor(0.0))
    tensor([[1., -0.],
            [0., 1.]])
    """
    angle = check_tensor("angle", angle, floating=True)
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c, -s, s, c], dim=-1).unflatten(-1, (2, 2))


def random_rotation_2d(*shape, generator=None, dtype=None, device=None) -> torch.Tensor:
    """Haar-uniform random rotations in SO(2) (angle uniform on ``[0, 2π)``).

    Returns
    -------
    Tensor of shape ``(*shape, 2, 2)``.

    Examples
    --------
    >>> random_rotation_2d(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2, 2])
    """
    shape, dtype = _shape(shape), _dtype(dtype)
    _check_size(shape, 1 + 4 + 4, dtype, device)  # angles, cos/sin stack, matrices
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)
    return rotation_2d((2 * math.pi) * u)


def geodesic_distance(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic (angle) distance between rotations, in ``[0, π]``.

    Computed as ``atan2(|vee(A - Aᵀ)| / 2, (tr A - 1) / 2)`` with ``A = R1ᵀ R2``: both arguments carry
    absolute error ~ machine epsilon, so the angle is accurate near 0 *and* near π (``acos`` of the
    trace and ``asin`` of the chordal distance each lose half the digits at one end).

    Parameters
    ----------
    R1, R2 : Tensor ``(..., 3, 3)``
        Rotation matrices; batch dims broadcast.

    Returns
    -------
    Tensor of shape ``(...)``.

    Examples
    --------
    >>> Rz = euler_to_matrix(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    >>> round(float(geodesic_distance(torch.eye(3, dtype=torch.float64), Rz)), 6)
    0.3
    """
    R1 = _check_values("R1", R1, (..., 3, 3))
    R2 = _check_values("R2", R2, (..., 3, 3))
    try:
        torch.broadcast_shapes(R1.shape[:-2], R2.shape[:-2])
    except RuntimeError:
        raise ValueError(f"R1, R2: batch shapes {tuple(R1.shape[:-2])} and {tuple(R2.shape[:-2])} do not broadcast") from None
    A = R1.transpose(-1, -2) @ R2
    skew = torch.stack([A[..., 2, 1] - A[..., 1, 2], A[..., 0, 2] - A[..., 2, 0], A[..., 1, 0] - A[..., 0, 1]], dim=-1)
    # scaled norm: a plain sum of squares underflows for angles below ~1e-154
    big = skew.abs().amax(dim=-1, keepdim=True)
    sin = 0.5 * big[..., 0] * torch.linalg.vector_norm(skew / torch.where(big > 0, big, 1.0), dim=-1)
    cos = 0.5 * (A.diagonal(dim1=-2, dim2=-1).sum(-1) - 1)
    return torch.atan2(sin, cos)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(..., 4)`` in ``(x, y, z, w)`` order -> rotation matrices ``(..., 3, 3)``.

    The input is normalised first (after an exact power-of-two rescaling, so norms from the
    smallest to the largest finite value are fine). A zero quaternion raises ``ValueError`` on
    the CPU; on CUDA it is not checked (no host sync) and gives NaN.

    Raises
    ------
    ValueError
        ``q`` is not ``(..., 4)``, holds NaN/inf or (CPU) a zero quaternion.

    Examples
    --------
    >>> quaternion_to_matrix(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    import roma

    q = _check_values("q", q, (..., 4))
    if _checking(q):
        _raise_where("q", (q == 0).all(-1), "zero quaternion")
    q = _pow2_unscale(q)
    return roma.unitquat_to_rotmat(q / torch.linalg.vector_norm(q, dim=-1, keepdim=True))


def matrix_to_quaternion(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> unit quaternions ``(..., 4)``, ``(x, y, z, w)``, with ``w >= 0``.

    Markley's variant of Shepperd's method (roma): accurate for every rotation angle.

    Examples
    --------
    >>> matrix_to_quaternion(torch.eye(3))
    tensor([0., 0., 0., 1.])
    """
    import roma

    R = _check_values("R", R, (..., 3, 3))
    q = roma.rotmat_to_unitquat(R)
    return torch.where(q[..., 3:] < 0, -q, q)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(..., 3)`` (``angle * unit_axis``) -> rotation matrices ``(..., 3, 3)``.

    Any finite angle, up to the largest finite value, is a rotation by exactly that angle (the
    norm is rescaled where its square would overflow).

    Examples
    --------
    >>> R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    >>> R.round(decimals=6)
    tensor([[ 0., -1.,  0.],
            [ 1.,  0.,  0.],
            [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    import roma

    v = _check_values("v", v, (..., 3))
    # Not roma.rotvec_to_rotmat: below angle 1e-6 it switches to the first-order matrix I + [v]x, which
    # is off by angle²/2 (5e-13) and not orthogonal. Going through the quaternion (sinc is exact near
    # 0) is accurate to round-off at every angle. roma's norm overflows above sqrt(max) (1.8e19 in
    # float32): the norm here is rescaled there, the same bits elsewhere.
    return roma.unitquat_to_rotmat(_rotvec_to_unitquat(v))


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> rotation vectors ``(..., 3)`` with norm (angle) in ``[0, π]``.

    At exactly π the axis sign is arbitrary (both vectors give the same rotation).

    Examples
    --------
    >>> R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    >>> matrix_to_axis_angle(R)  # a quarter turn about z
    tensor([0.0000, 0.0000, 1.5708], dtype=torch.float64)
    """
    import roma

    R = _check_values("R", R, (..., 3, 3))
    return roma.unitquat_to_rotvec(roma.rotmat_to_unitquat(R), shortest_arc=True)


def matrix_to_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> the 6D representation ``(..., 6)`` = first two columns.

    Examples
    --------
    >>> matrix_to_6d(torch.eye(3))
    tensor([1., 0., 0., 0., 1., 0.])
    """
    R = _check_values("R", R, (..., 3, 3))
    return R[..., :, :2].transpose(-1, -2).reshape(*R.shape[:-2], 6)


def sixd_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """6D representations ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` by Gram–Schmidt (roma).

    Columns: ``a = normalise(d6[:3])``, ``b = normalise(d6[3:] - (a·d6[3:]) a)``, ``a × b``.
    Each column is rescaled by a power of two first (exact), so columns of any finite norm work.
    Columns that define no rotation -- a zero column, or two columns collinear to working
    precision (``|b before normalising| <= 8 eps |d6[3:]|``, where the second column would be
    rounding noise) -- raise ``ValueError`` on the CPU; on CUDA they are not checked (no host sync):
    exact zeros give NaN, collinear columns an orthonormal matrix whose second column is noise.

    Raises
    ------
    ValueError
        ``d6`` is not ``(..., 6)``, holds NaN/inf or (CPU) a zero or collinear pair of columns.

    Examples
    --------
    >>> sixd_to_matrix(torch.tensor([2.0, 0.0, 0.0, 1.0, 3.0, 0.0]))
    tensor([[1., 0., 0.],
            [0., 1., 0.],
            [0., 0., 1.]])
    """
    import roma

    d6 = _check_values("d6", d6, (..., 6))
    cols = _pow2_unscale(d6.unflatten(-1, (2, 3)))  # (..., 2, 3): each column scaled on its own
    if _checking(d6):
        _raise_where("d6", (cols[..., 0, :] == 0).all(-1), "zero first column d6[..., :3]")
        a = cols[..., 0, :] / torch.linalg.vector_norm(cols[..., 0, :], dim=-1, keepdim=True)
        b = cols[..., 1, :] - (a * cols[..., 1, :]).sum(-1, keepdim=True) * a
        eps = torch.finfo(d6.dtype).eps
        _raise_where("d6", torch.linalg.vector_norm(b, dim=-1) <= 8 * eps * torch.linalg.vector_norm(cols[..., 1, :], dim=-1),
                     "second column d6[..., 3:] zero or collinear with the first")
    return roma.special_gramschmidt(cols.transpose(-1, -2))


def _check_convention(convention) -> str:
    if not isinstance(convention, str):
        raise TypeError(f"convention: expected a string such as 'ZYZ', got {type(convention).__name__}")
    ok = (
        len(convention) == 3
        and (convention.isupper() or convention.islower())
        and set(convention.lower()) <= _EULER_AXES
        and convention[0] != convention[1]
        and convention[1] != convention[2]
    )
    if not ok:
        raise ValueError(
            "convention: expected 3 axes from 'xyz' (extrinsic) or 'XYZ' (intrinsic) with no two consecutive "
            f"axes equal, e.g. 'ZYZ', got {convention!r}"
        )
    return convention


def euler_to_matrix(angles: torch.Tensor, convention: str = "ZYZ") -> torch.Tensor:
    """Euler angles ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``.

    Upper-case conventions are intrinsic (``"ZYZ"``: ``R = Rz(a0) @ Ry(a1) @ Rz(a2)``), lower-case
    extrinsic (``"zyz"``: ``R = Rz(a2) @ Ry(a1) @ Rz(a0)``), as in scipy and roma. Any finite
    angle, up to the largest finite value, is a rotation by exactly that angle.

    Examples
    --------
    >>> R = euler_to_matrix(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64))
    >>> bool(torch.allclose(matrix_to_euler(R), torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)))
    True
    """
    import roma

    convention = _check_convention(convention)
    angles = _check_values("angles", angles, (..., 3))
    # roma.euler_to_unitquat, with the overflow-free rotation-vector map (roma's squares each angle:
    # NaN above sqrt(max), 1.8e19 in float32); the same bits for ordinary angles
    axes, parts = convention.upper(), list(angles.unbind(-1))
    if convention.islower():  # extrinsic = intrinsic with the axes and angles reversed
        axes, parts = axes[::-1], parts[::-1]
    quats = []
    for axis, angle in zip(axes, parts):
        rotvec = torch.zeros(*angle.shape, 3, dtype=angle.dtype, device=angle.device)
        rotvec[..., "XYZ".index(axis)] = angle
        quats.append(_rotvec_to_unitquat(rotvec))
    return roma.unitquat_to_rotmat(roma.quat_composition(quats, normalize=True))


def matrix_to_euler(R: torch.Tensor, convention: str = "ZYZ") -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> Euler angles ``(..., 3)`` (see :func:`euler_to_matrix`).

    Angles lie in ``(-π, π]``; the middle angle of a symmetric convention (e.g. ``"ZYZ"``) in ``[0, π]``.
    At gimbal lock the split between the first and third angle is arbitrary (third set to 0).

    Examples
    --------
    >>> matrix_to_euler(torch.eye(3, dtype=torch.float64))
    tensor([0., 0., 0.], dtype=torch.float64)
    """
    import roma

    convention = _check_convention(convention)
    R = _check_values("R", R, (..., 3, 3))
    # roma's default epsilon=1e-7 treats middle angles within 1e-7 of 0 or π as gimbal lock and drops
    # the third angle, an error up to ~2e-7. Its half-angle atan2 formulas stay exact arbitrarily close
    # to the singularity, so only exact singularities are special-cased here (epsilon=0).
    return roma.rotmat_to_euler(convention, R, epsilon=0.0)
