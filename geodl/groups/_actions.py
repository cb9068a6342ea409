"""The built-in feature kinds: how a group element acts on each, and a random example of each.

Each kind is one :func:`~geodl.groups.register_kind` call at the bottom of this module; the table
is in ``docs/groups.md`` and printed by ``geodl check --help``. Conventions:

- ``g = (s, R, t, perm)`` acts on ``points`` as ``s·R x + t``; ``vectors`` drop ``t``,
  ``pseudovectors`` gain ``det R``; representation kinds (``sh``, ``so3``, irreps, ``tensor2``,
  ``rotation``) ignore ``s`` and ``t``.
- Improper ``R = -R'`` acts on spherical-harmonic degree ``l`` as ``(-1)^l D^l(R')`` (``sh``, ``so3``)
  and on an e3nn irrep ``(l, p)`` as ``p · D^l(R')`` (what ``Irreps.D_from_matrix`` does).
- ``sh:<lmax>`` is in the basis of ``geodl.ops.spherical_harmonics``'s default ``convention="real"``;
  ``sh:<lmax>:e3nn`` in e3nn's basis (``convention="e3nn"``), the basis of :func:`wigner_D`. With
  ``P v = (v_z, v_x, v_y)``, ``Y_e3nn(x) = Y_real(P x)``, so ``D_real(R) = D_e3nn(Pᵀ R P)``.
- A piecewise element (group ``"E3^parts"``) moves row ``i`` of a tensor by the transform of part
  ``part_labels[i]``; kinds with a spatial layout (``equirect``, ``image2d``) have no piecewise action.

A node permutation ``perm`` maps a node tensor ``x`` to ``x[perm]``: new node ``i`` is old node
``perm[i]``. An edge ``(a, b)`` between old nodes therefore becomes ``(inv[a], inv[b])`` with
``inv = argsort(perm)``; edge order is unchanged.
"""

from __future__ import annotations

import functools
import math

import torch

from geodl._checks import check_tensor
from geodl.groups._group import GroupElement
from geodl.groups._kinds import KINDS, KindSpec, act, parse_kind, register_kind
from geodl.groups._rotations import random_rotation, random_rotation_2d
from geodl.groups._wigner import wigner_D_blocks

__all__ = ["KindSpec", "parse_kind", "act", "KINDS"]

# P v = (v_z, v_x, v_y): (Pᵀ R P)[i, j] = R[π(i), π(j)] with π = (1, 2, 0)
_REAL_FROM_E3NN = [1, 2, 0]


# ------------------------------------------------------------------------------------------ helpers
def _cast(t, x):
    return None if t is None else t.to(dtype=x.dtype, device=x.device)


def _rows(spec: KindSpec, g: GroupElement, x: torch.Tensor, trailing: int) -> torch.Tensor:
    """The part label of each row of ``x`` (dim 0) under a piecewise ``g``."""
    lab = g.part_labels.to(x.device)
    if x.dim() < trailing + 1 or x.shape[0] != lab.shape[0]:
        raise ValueError(f"x: kind {spec.kind!r} under a piecewise element expects {lab.shape[0]} rows (one per "
                         f"part label) along dim 0, got shape {tuple(x.shape)}")
    return lab


def _per_row(M: torch.Tensor, lab: torch.Tensor, x: torch.Tensor, trailing: int) -> torch.Tensor:
    """``M (P, ..., a, b)`` indexed by labels and shaped to broadcast against ``x``'s leading dims."""
    core = M.shape[1:]
    return M[lab].reshape(lab.shape[0], *([1] * (x.dim() - 1 - trailing)), *core)


def _matvec(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (M @ x.unsqueeze(-1)).squeeze(-1)


def _det_sign(R: torch.Tensor) -> torch.Tensor:
    return torch.sign(torch.linalg.det(R))  # no host sync: improper R handled arithmetically


def _rotation_of(spec: KindSpec, g: GroupElement, x: torch.Tensor, d: int | None = 3):
    """``(R, labels)``: ``g``'s rotation cast to ``x`` ((d, d)) or per part ((P, d, d)) with labels; R None = identity."""
    if g.has_parts:
        R = _cast(g.part_rotation, x)
        return R, g.part_labels
    R = _cast(g.rotation, x)
    return R, None


def _need_dim(spec: KindSpec, R: torch.Tensor, d: int = 3) -> None:
    if R.shape[-1] != d:
        raise ValueError(f"g: kind {spec.kind!r} needs a {d}D rotation, got a {R.shape[-1]}D element")


def _block_diag(blocks: list[torch.Tensor]) -> torch.Tensor:
    """Batched block-diagonal matrix of square blocks ``(..., n_i, n_i)``."""
    if blocks[0].dim() == 2:
        return torch.block_diag(*blocks)
    n = sum(b.shape[-1] for b in blocks)
    out = blocks[0].new_zeros(*blocks[0].shape[:-2], n, n)
    i = 0
    for b in blocks:
        k = b.shape[-1]
        out[..., i:i + k, i:i + k] = b
        i += k
    return out


def _sh_blocks(R: torch.Tensor, lmax: int) -> list[torch.Tensor]:
    """``(-1)^l`` or 1 times ``D^l(±R)`` for every degree, for orthogonal ``R (..., 3, 3)``."""
    sign = _det_sign(R)
    s = sign[..., None, None]
    return [b * s**l for l, b in enumerate(wigner_D_blocks(lmax, s * R))]


def _linear_prologue(spec, g, x, n, dim_text):
    """Shared checks of the linear actions on the last dim of ``x``: ``(R, per-row labels)``.

    ``R`` is None when ``g`` has no rotation (the action is then the identity); the labels are
    None unless ``g`` is a piecewise element.
    """
    check_tensor("x", x, floating=True)
    if x.dim() == 0 or x.shape[-1] != n:
        raise ValueError(f"x: kind {spec.kind!r} expects last dim {dim_text}{n}, got shape {tuple(x.shape)}")
    R, lab = _rotation_of(spec, g, x)
    if R is None:
        return None, None
    _need_dim(spec, R)
    return R, (None if lab is None else _rows(spec, g, x, 1))


def _apply_rep(spec, g, x, n, matrix_of):
    """Apply the linear representation ``R -> matrix_of(R) (..., n, n)`` to the last dim of ``x``."""
    R, lab = _linear_prologue(spec, g, x, n, "")
    if R is None:
        return x
    if lab is None:
        return x @ matrix_of(R).transpose(-1, -2)
    return _matvec(_per_row(matrix_of(R), lab, x, 1), x)


# ------------------------------------------------------------------------------------------ actions
def _act_scalar(spec, g, x):
    return x


def _act_vec(spec: KindSpec, g: GroupElement, x: torch.Tensor) -> torch.Tensor:
    """points, vectors, pseudovectors: ``s·R x (+ t)`` (``det R`` for pseudovectors)."""
    base = spec.base
    check_tensor("x", x, floating=True)
    d = g.dim
    if d is not None:
        check_tensor("x", x, shape=(..., d))
    if g.has_parts:
        lab = _rows(spec, g, x, 1)
        y = x
        if g.part_rotation is not None:
            R = _per_row(_cast(g.part_rotation, x), lab, x, 1)
            y = _matvec(R, x)
            if base == "pseudovectors":
                y = y * _det_sign(R)[..., None]
        if base == "points" and g.part_translation is not None:
            y = y + _per_row(_cast(g.part_translation, x), lab, x, 1)
        return y
    R = _cast(g.rotation, x)
    y = x if R is None else x @ R.transpose(0, 1)
    if base == "pseudovectors" and R is not None:
        y = y * _det_sign(R)
    if g.scale is not None:
        y = y * g.scale
    if base == "points" and g.translation is not None:
        y = y + _cast(g.translation, x)
    return y


def _act_matrix(spec, g, x):
    """``tensor2``: ``R T Rᵀ``; ``rotation``: ``R @ R_x`` (globally or per part)."""
    check_tensor("x", x, floating=True)
    d = g.dim
    check_tensor("x", x, shape=(..., d, d) if d is not None else (..., None, None))
    R, lab = _rotation_of(spec, g, x)
    if R is None:
        return x
    if lab is not None:
        R = _per_row(R, _rows(spec, g, x, 2), x, 2)
    if spec.base == "rotation":
        return R @ x
    return R @ x @ R.transpose(-1, -2)


def _act_sh(spec, g, x):
    lmax = spec.lmax
    n = (lmax + 1) ** 2
    if x.dim() == 0 or x.shape[-1] != n:
        check_tensor("x", x, floating=True)
        raise ValueError(f"x: kind {spec.kind!r} expects last dim (lmax+1)² = {n}, got shape {tuple(x.shape)}")
    if spec.param != "e3nn":
        return _apply_rep(spec, g, x, n, lambda R: _block_diag(_sh_blocks(_real_basis(R), lmax)))
    return _apply_rep(spec, g, x, n, lambda R: _block_diag(_sh_blocks(R, lmax)))


def _real_basis(R: torch.Tensor) -> torch.Tensor:
    """``Pᵀ R P``: the rotation whose e3nn-basis Wigner-D is the real-basis Wigner-D of ``R``."""
    idx = torch.tensor(_REAL_FROM_E3NN, device=R.device)
    return R.index_select(-2, idx).index_select(-1, idx)


def _act_so3(spec, g, x):
    lmax = spec.lmax
    R, lab = _linear_prologue(spec, g, x, _so3_dim(lmax), "sum_l (2l+1)² = ")
    if R is None:
        return x
    out, i = [], 0
    for l, D in enumerate(_sh_blocks(R, lmax)):
        k = 2 * l + 1
        F = x[..., i:i + k * k].unflatten(-1, (k, k))
        D = D if lab is None else _per_row(D, lab, x, 1)
        out.append((D @ F).flatten(-2))
        i += k * k
    return torch.cat(out, dim=-1)


def _so3_dim(lmax: int) -> int:
    return sum((2 * l + 1) ** 2 for l in range(lmax + 1))


@functools.lru_cache(maxsize=64)
def _irreps_list(text: str):
    from e3nn.o3 import Irreps

    return [(mul, ir.l, ir.p) for mul, ir in Irreps(text)]


def _irreps_matrix(text: str, R: torch.Tensor) -> torch.Tensor:
    items = _irreps_list(text)
    lmax = max((l for _, l, _ in items), default=0)
    sign = _det_sign(R)
    D = wigner_D_blocks(lmax, sign[..., None, None] * R)
    blocks = []
    for mul, l, p in items:
        factor = ((1 + p) + (1 - p) * sign) / 2  # 1 for proper R, p for improper
        blocks += [D[l] * factor[..., None, None]] * mul
    if not blocks:
        return R.new_zeros(*R.shape[:-2], 0, 0)
    return _block_diag(blocks)


def _act_irreps(spec, g, x):
    items = _irreps_list(spec.param)
    n = sum(mul * (2 * l + 1) for mul, l, _ in items)
    return _apply_rep(spec, g, x, n, lambda R: _irreps_matrix(spec.param, R))


def _no_parts(spec, g):
    if g.has_parts:
        raise ValueError(f"g: kind {spec.kind!r} has no piecewise action (a part-wise element acts on rows)")


def _act_equirect(spec, g, x):
    H, W = spec.param
    check_tensor("x", x, shape=(..., H, W))
    _no_parts(spec, g)
    if g.rotation is None:
        return x
    R = g.rotation.detach().to(torch.float64).cpu()
    _need_dim(spec, R)
    flip = bool(R[2, 2] < 0)
    a = math.atan2(float(R[1, 0]), float(R[0, 0]))
    k = a * W / (2 * math.pi)
    kr = round(k)
    c, s = math.cos(2 * math.pi * kr / W), math.sin(2 * math.pi * kr / W)
    ref = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    if flip:
        ref = ref @ torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    if float((R - ref).abs().max()) > 1e-6:
        raise ValueError(f"g: kind {spec.kind!r} is acted on by whole-bin azimuth rolls Rz(2πk/{W}) and the pole "
                         f"flip diag(1, -1, -1) only (groups 'equirect:<W>', 'azimuth:<W>'); got rotation "
                         f"{R.tolist()}")
    y = torch.flip(x, (-2, -1)) if flip else x
    return torch.roll(y, kr % W, dims=-1) if kr % W else y


def _act_image2d(spec, g, x):
    check_tensor("x", x, shape=(..., None, None))
    _no_parts(spec, g)
    if g.rotation is None:
        return x
    R = g.rotation.detach().to(torch.float64).cpu()
    if R.shape[-1] == 3:  # a 3-D rotation about the camera axis z (x right, y up): its in-plane block
        if float((R[2] - torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).abs().max()) > 1e-9 or \
                float(R[:2, 2].abs().max()) > 1e-9:
            raise ValueError(f"g: kind {spec.kind!r} is acted on by 3-D rotations about the z axis only (the "
                             f"camera axis; group 'azimuth:4' for quarter turns); got rotation {R.tolist()}")
        R = R[:2, :2]
    _need_dim(spec, R, 2)
    Ri = R.round()
    if float((R - Ri).abs().max()) > 1e-9:
        raise ValueError(f"g: kind {spec.kind!r} is acted on by quarter turns and axis flips only (group 'D4'); "
                         f"got rotation {R.tolist()}")
    H, W = x.shape[-2:]
    (r00, r01), (r10, r11) = [[int(v) for v in row] for row in Ri.tolist()]
    if r00 == 0 and H != W:
        raise ValueError(f"x: a quarter turn needs a square image, got shape {tuple(x.shape)}")
    # pixel (i, j) sits at (u, v) = (j - (W-1)/2, (H-1)/2 - i); doubled to stay integer
    U = (2 * torch.arange(W) - (W - 1))[None, :].expand(H, W)
    V = ((H - 1) - 2 * torch.arange(H))[:, None].expand(H, W)
    Us, Vs = r00 * U + r10 * V, r01 * U + r11 * V  # source = Rᵀ (u, v)
    js, is_ = ((Us + (W - 1)) // 2).to(x.device), (((H - 1) - Vs) // 2).to(x.device)
    return x[..., is_, js]


def _act_edge_index(spec, g, x):
    # Node ids are checked on the CPU (a -1 would otherwise wrap to the last node): non-negative,
    # and below N when the element has a permutation of N nodes. CUDA tensors are not read (no host sync).
    check_tensor("x", x, shape=(2, None), dtypes=(torch.int64, torch.int32))
    if x.device.type == "cpu" and x.numel():
        lo, hi = int(x.min()), int(x.max())
        if g.perm is not None and (lo < 0 or hi >= g.perm.shape[0]):
            raise ValueError(f"x: edge_index node ids must lie in [0, {g.perm.shape[0]}) (the element permutes "
                             f"{g.perm.shape[0]} nodes), got range [{lo}, {hi}]")
        if lo < 0:
            raise ValueError(f"x: edge_index node ids must be non-negative, got {lo}")
    if g.perm is None:
        return x
    inv = torch.argsort(g.perm.to(x.device))
    return inv[x].to(x.dtype)


def _act_labels(spec, g, x):
    check_tensor("x", x, dtypes=(torch.int64, torch.int32), min_rows=1)
    return x


# ------------------------------------------------------------------------------------------ parsers
# Kinds act through dense (block-diagonal) matrices; above this degree that matrix alone takes
# gigabytes ((lmax+1)^4 float64 values for sh, ~(2 lmax)^6/15 for so3), so larger degrees are refused.
KIND_LMAX_LIMIT = 100


def _check_kind_lmax(lmax: str, kind: str) -> None:
    if int(lmax) > KIND_LMAX_LIMIT:
        raise ValueError(f"degree {int(lmax)} of '{kind}' is above the largest supported kind degree "
                         f"{KIND_LMAX_LIMIT} (the kind acts through a dense matrix, which takes gigabytes there)")


def _parse_lmax(text: str):
    lmax, sep, conv = text.partition(":")
    if not lmax.isdigit():
        raise ValueError(f"expected a degree, e.g. 'sh:2', got {text!r}")
    _check_kind_lmax(lmax, "sh")
    if sep and conv != "e3nn":
        raise ValueError(f"the only named basis is 'e3nn' ('sh:{lmax}:e3nn'), got {conv!r}")
    return (f"{int(lmax)}:e3nn" if sep else str(int(lmax))), int(lmax), ("e3nn" if sep else None)


def _parse_so3(text: str):
    if not text.isdigit():
        raise ValueError(f"expected a degree, e.g. 'so3:2', got {text!r}")
    _check_kind_lmax(text, "so3")
    return str(int(text)), int(text), None


def _parse_hw(text: str):
    h, sep, w = text.partition("x")
    if not (sep and h.isdigit() and w.isdigit() and int(h) >= 1 and int(w) >= 1):
        raise ValueError(f"expected the map size as <H>x<W>, e.g. 'equirect:32x64', got {text!r}")
    return f"{int(h)}x{int(w)}", None, (int(h), int(w))


# ------------------------------------------------------------------------------------------ random
def _randn(shape, dtype, generator, device):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def _rand_vec(spec, n, *, dim, dtype, generator, device):
    return _randn((n,) if spec.base == "scalar" else (n, dim), dtype, generator, device)


def _rand_tensor2(spec, n, *, dim, dtype, generator, device):
    return _randn((n, dim, dim), dtype, generator, device)


def _rand_sh(spec, n, *, dim, dtype, generator, device):
    return _randn((n, (spec.lmax + 1) ** 2), dtype, generator, device)


def _rand_so3(spec, n, *, dim, dtype, generator, device):
    return _randn((n, _so3_dim(spec.lmax)), dtype, generator, device)


def _rand_irreps(spec, n, *, dim, dtype, generator, device):
    return _randn((n, sum(m * (2 * l + 1) for m, l, _ in _irreps_list(spec.param))), dtype, generator, device)


def _rand_rotation(spec, n, *, dim, dtype, generator, device):
    R = random_rotation(n, generator=generator, dtype=torch.float64) if dim == 3 else \
        random_rotation_2d(n, generator=generator, dtype=torch.float64)
    return R.to(dtype=dtype, device=device)


def _rand_equirect(spec, n, *, dim, dtype, generator, device):
    return _randn((n, *spec.param), dtype, generator, device)


def _rand_image2d(spec, n, *, dim, dtype, generator, device):
    return _randn((n, 8, 8), dtype, generator, device)


def _rand_edge_index(spec, n, *, dim, dtype, generator, device):
    if n < 2:
        return torch.zeros(2, 0, dtype=torch.long, device=device)
    src = torch.randint(0, n, (2 * n,), generator=generator)
    dst = (src + torch.randint(1, n, (2 * n,), generator=generator)) % n  # no self-loops
    return torch.stack([src, dst]).to(device)


def _rand_batch(spec, n, *, dim, dtype, generator, device):
    return ((torch.arange(n) * min(3, n)) // n).to(device)  # 3 graphs (fewer if n < 3), sorted


def _rand_parts(spec, n, *, dim, dtype, generator, device):
    return (torch.randperm(n, generator=generator) % min(3, n)).to(device)  # 3 parts, each present


# ------------------------------------------------------------------------------------------ registry
register_kind("scalar", act=_act_scalar, random=_rand_vec, shape="any", doc="unchanged", geometric=False)
register_kind("points", act=_act_vec, random=_rand_vec, shape="(..., d)", doc="s·R x + t")
register_kind("vectors", act=_act_vec, random=_rand_vec, shape="(..., d)", doc="s·R v")
register_kind("pseudovectors", act=_act_vec, random=_rand_vec, shape="(..., d)", doc="det(R)·s·R v")
register_kind("tensor2", act=_act_matrix, random=_rand_tensor2, shape="(..., d, d)",
              doc="R T Rᵀ (scale not applied)")
register_kind("sh", act=_act_sh, random=_rand_sh, param="<lmax>[:e3nn]", parse=_parse_lmax,
              shape="(..., (lmax+1)²)",
              doc="SH coefficients in spherical_harmonics' default real basis (':e3nn': e3nn's); "
                  "Wigner-D, (-1)^l if improper")
register_kind("so3", act=_act_so3, random=_rand_so3, param="<lmax>", parse=_parse_so3,
              shape="(..., sum_l (2l+1)²)",
              doc="SO(3) Fourier coefficients, blocks F^l[m, n] row-major: F^l -> D^l(R) F^l")
register_kind("irreps", act=_act_irreps, random=_rand_irreps, param="<irreps>", parse=lambda t: (t, None, t),
              shape="(..., irreps.dim)",
              doc="e3nn Irreps, also bare ('2x0e+1x1o'): D^l per irrep, times p if improper")
register_kind("rotation", act=_act_matrix, random=_rand_rotation, shape="(..., d, d)",
              doc="R_x -> R @ R_x (left multiplication; s, t ignored)")
register_kind("equirect", act=_act_equirect, random=_rand_equirect, param="<H>x<W>", parse=_parse_hw,
              shape="(..., H, W)",
              doc="equirectangular map (rows θ from north, cols φ): azimuth rolls, pole flip")
register_kind("image2d", act=_act_image2d, random=_rand_image2d, shape="(..., H, W)",
              doc="image under exact quarter turns and flips (group D4; or Rz quarter turns, 'azimuth:4')")
register_kind("edge_index", act=_act_edge_index, random=_rand_edge_index, shape="(2, E) integer", node="never",
              geometric=False, integer=True, doc="node ids relabelled so edges follow their nodes")
register_kind("batch", act=_act_labels, random=_rand_batch, shape="(N,) integer", node="always",
              geometric=False, integer=True, doc="graph id per node (PyG batch): permuted with the nodes")
register_kind("parts", act=_act_labels, random=_rand_parts, shape="(N,) integer", node="always",
              geometric=False, integer=True,
              doc="part id per node for piecewise groups ('E3^parts'), permuted with nodes")
register_kind("perm", same_as="node:scalar", doc="same as node:scalar")
