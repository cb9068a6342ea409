"""The VI-Net heads: the V-branch (viewpoint bins, focal loss, labels) and the I-branch (in-plane
rotation from the features resampled in the viewpoint frame).

Conventions (equirectangular maps, rows = polar angle from +z, columns = azimuth): row ``i`` covers
``β ∈ [iπ/H, (i+1)π/H)``, column ``j`` covers ``α ∈ [2πj/W, 2π(j+1)/W)``; bin centres are
``β_i = (i + 0.5)π/H`` and ``α_j = (j + 0.5)2π/W``. The viewpoint rotation is
``R_vp = Rz(α) Ry(β)``, so that ``R_vp e_z`` is the direction ``(sin β cos α, sin β sin α, cos β)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from geodl._checks import check_int, check_memory, check_number, check_positive_int, check_tensor

__all__ = ["VBranch", "IBranch", "focal_loss", "viewpoint_labels", "viewpoint_rotation", "bin_centres", "rotate_sphere_grid"]


def _conv_block(cin: int, cout: int, *, padding: str, symmetric: bool) -> nn.Sequential:
    from ._conv import SPAConv2d

    return nn.Sequential(SPAConv2d(cin, cout, 3, padding=padding, symmetric=symmetric, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _check_weights(name: str, value, n: int) -> None:
    """Refuse a layer width whose ``n`` float32 weights would not fit in memory (before allocating)."""
    check_memory(name, value, 4 * n, "cpu", what=f"{n} weights")


# bins per axis: bin indices and bin centres stay exact integers / well resolved in float32 below 2^24
MAX_BINS = 1 << 24


def _check_hw(H, W, name_h: str = "H", name_w: str = "W") -> tuple[int, int]:
    H = check_int(name_h, H, min=1, max=MAX_BINS)
    W = check_int(name_w, W, min=1, max=MAX_BINS)
    if W % 2:
        raise ValueError(f"{name_w}: expected an even number of azimuth bins (the pole padding rolls by W/2), got {W}")
    return H, W


def viewpoint_rotation(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``R_vp = Rz(α) Ry(β)`` for azimuths ``alpha`` and polar angles ``beta`` (any equal shapes, radians).

    Returns ``(..., 3, 3)``; its third column is the viewpoint direction
    ``(sin β cos α, sin β sin α, cos β)``.

    Examples
    --------
    >>> R = viewpoint_rotation(torch.tensor([0.0]), torch.tensor([math.pi / 2]))
    >>> R[0, :, 2].round(decimals=6).abs()
    tensor([1., 0., 0.])
    """
    alpha = check_tensor("alpha", alpha, floating=True)
    beta = check_tensor("beta", beta, floating=True)
    if alpha.shape != beta.shape:
        raise ValueError(f"beta: expected the shape of alpha {tuple(alpha.shape)}, got {tuple(beta.shape)}")
    ca, sa, cb, sb = alpha.cos(), alpha.sin(), beta.cos(), beta.sin()
    z = torch.zeros_like(alpha)
    rows = [ca * cb, -sa, ca * sb, sa * cb, ca, sa * sb, -sb, z, cb]
    return torch.stack(rows, -1).unflatten(-1, (3, 3))


def bin_centres(polar_bin: torch.Tensor, azimuth_bin: torch.Tensor, H: int, W: int, *,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin indices -> bin-centre angles ``(α, β)`` in radians: ``α = (j + 0.5)2π/W``, ``β = (i + 0.5)π/H``.

    Examples
    --------
    >>> a, b = bin_centres(torch.tensor([0]), torch.tensor([3]), 4, 8)
    >>> round(float(a) / math.pi, 4), round(float(b) / math.pi, 4)
    (0.875, 0.125)
    """
    H, W = _check_hw(H, W)
    polar_bin = check_tensor("polar_bin", polar_bin, dtypes=(torch.int64, torch.int32))
    azimuth_bin = check_tensor("azimuth_bin", azimuth_bin, dtypes=(torch.int64, torch.int32))
    beta = (polar_bin.to(dtype) + 0.5) * (math.pi / H)
    alpha = (azimuth_bin.to(dtype) + 0.5) * (2 * math.pi / W)
    return alpha, beta


def viewpoint_labels(R: torch.Tensor, H: int, W: int, *, jitter: int = 0,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Viewpoint bin labels of rotations: the bins of the direction ``d = R e_z``.

    ``β = arccos(d_z)``, ``α = atan2(d_y, d_x) mod 2π``; ``polar = ⌊β H / π⌋`` clamped to
    ``[0, H − 1]`` (``β = π`` is row ``H − 1``, not the out-of-range ``H``), ``azimuth = ⌊α W / 2π⌋ mod W``.
    With ``jitter > 0`` each label gets an integer offset drawn uniformly from ``[−jitter, jitter]``
    (symmetric, so the offset has mean 0; polar labels are clamped at the poles, azimuth labels wrap).

    Parameters
    ----------
    R : Tensor (B, 3, 3)
        Rotations (world = R @ canonical).
    H, W : int
        Number of polar and azimuth bins (``W`` even).
    jitter : int
        Largest label offset (0 = none).
    generator : torch.Generator, optional
        Random source of the jitter.

    Returns
    -------
    (polar_bin, azimuth_bin) : two Tensors (B,) int64

    Examples
    --------
    >>> viewpoint_labels(torch.eye(3)[None], 4, 8)
    (tensor([0]), tensor([0]))
    >>> flip = torch.diag(torch.tensor([1.0, -1.0, -1.0]))[None]
    >>> viewpoint_labels(flip, 4, 8)[0]
    tensor([3])
    """
    R = check_tensor("R", R, shape=(None, 3, 3), floating=True, finite=True)
    H, W = _check_hw(H, W)
    jitter = check_int("jitter", jitter, min=0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator or None, got {type(generator).__name__}")
    d = R[:, :, 2].double()
    beta = torch.arccos(d[:, 2].clamp(-1.0, 1.0))
    alpha = torch.remainder(torch.atan2(d[:, 1], d[:, 0]), 2 * math.pi)
    polar = torch.floor(beta * (H / math.pi)).long().clamp(0, H - 1)
    azimuth = torch.remainder(torch.floor(alpha * (W / (2 * math.pi))).long(), W)
    if jitter:
        n = R.shape[0]
        gen_dev = generator.device if generator is not None else torch.device("cpu")
        off = torch.randint(-jitter, jitter + 1, (2, n), generator=generator, device=gen_dev).to(R.device)
        polar = (polar + off[0]).clamp(0, H - 1)
        azimuth = torch.remainder(azimuth + off[1], W)
    return polar, azimuth


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Multi-class focal loss ``mean_b −(1 − p_t)^γ log p_t`` (Lin et al. 2017), ``p = softmax(logits)``.

    ``gamma = 0`` is the cross-entropy. An empty batch gives 0.

    Parameters
    ----------
    logits : Tensor (B, K)
    target : Tensor (B,) int64 in [0, K)
    gamma : float >= 0

    Returns
    -------
    Tensor ()

    Examples
    --------
    >>> logits = torch.tensor([[2.0, 0.0, 0.0]])
    >>> t = torch.tensor([0])
    >>> bool(torch.isclose(focal_loss(logits, t, gamma=0.0), torch.nn.functional.cross_entropy(logits, t)))
    True
    """
    logits = check_tensor("logits", logits, ndim=2, floating=True)
    target = check_tensor("target", target, shape=(logits.shape[0],), dtypes=(torch.int64, torch.int32))
    gamma = check_number("gamma", gamma, nonnegative=True)
    K = logits.shape[1]
    if K < 1:
        raise ValueError(f"logits: expected at least one class, got shape {tuple(logits.shape)}")
    if target.numel() and (not torch.compiler.is_compiling()) and target.device.type == "cpu" \
            and bool(((target < 0) | (target >= K)).any()):
        raise ValueError(f"target: expected class ids in [0, {K}), got range [{int(target.min())}, {int(target.max())}]")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits, -1).gather(1, target.long()[:, None])[:, 0]
    p = logp.exp()
    weight = (1.0 - p).clamp(min=0.0) ** gamma if gamma else torch.ones_like(p)
    return -(weight * logp).mean()


class VBranch(nn.Module):
    """The V-branch: a convolutional head on the spherical features -> one map ``(B, 1, H, W)``;
    polar logits ``(B, H)`` = its maximum over columns, azimuth logits ``(B, W)`` = over rows.

    Parameters
    ----------
    channels : int
        Channels of the input feature map.
    H, W : int
        Map size (``W`` even).
    hidden : int
        Channels of the hidden convolution.
    padding, symmetric
        As in :class:`~geodl.nn.spherical.SPAConv2d` (``"zeros"``, ``False``: the ablation).

    Shapes: ``forward(x (B, channels, H, W)) -> (polar_logits (B, H), azimuth_logits (B, W))``.

    Examples
    --------
    >>> v = VBranch(8, 8, 16).eval()
    >>> p, a = v(torch.randn(2, 8, 8, 16))
    >>> p.shape, a.shape
    (torch.Size([2, 8]), torch.Size([2, 16]))
    >>> alpha, beta = v.predict(p, a)
    >>> alpha.shape
    torch.Size([2])
    """

    def __init__(self, channels: int, H: int, W: int, *, hidden: int = 32, padding: str = "spherical",
                 symmetric: bool = True):
        super().__init__()
        from ._conv import SPAConv2d

        self.channels = check_positive_int("channels", channels)
        self.H, self.W = _check_hw(H, W)
        hidden = check_positive_int("hidden", hidden)
        _check_weights("channels", channels, 9 * self.channels * hidden)
        self.head = nn.Sequential(_conv_block(channels, hidden, padding=padding, symmetric=symmetric),
                                  SPAConv2d(hidden, 1, 3, padding=padding, symmetric=symmetric))

    def score_map(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        """The per-bin score map ``(B, 1, H, W)`` (as a 1-tuple, for :func:`~geodl.testing.check_module`)."""
        x = check_tensor("x", x, shape=(None, self.channels, self.H, self.W), floating=True)
        return (self.head(x),)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (m,) = self.score_map(x)
        m = m[:, 0]
        return m.amax(-1), m.amax(-2)

    def predict(self, polar_logits: torch.Tensor, azimuth_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bin centres of the argmax: ``(α, β)`` (B,) each, radians."""
        polar_logits = check_tensor("polar_logits", polar_logits, shape=(None, self.H), floating=True)
        azimuth_logits = check_tensor("azimuth_logits", azimuth_logits, shape=(polar_logits.shape[0], self.W),
                                      floating=True)
        return bin_centres(polar_logits.argmax(-1), azimuth_logits.argmax(-1), self.H, self.W,
                           dtype=polar_logits.dtype)


def rotate_sphere_grid(x: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """Resample equirectangular maps in a rotated frame: ``out[b, :, i, j] = x[b](R_b u_ij)`` where
    ``u_ij`` is the direction of bin centre ``(i, j)`` -- bilinear, on the map pole-padded and
    wrapped in azimuth by one bin (so the seam and the poles interpolate across).

    Parameters
    ----------
    x : Tensor (B, C, H, W)
    R : Tensor (B, 3, 3)

    Returns
    -------
    Tensor (B, C, H, W)

    Examples
    --------
    >>> x = torch.randn(1, 2, 4, 8)
    >>> bool(torch.allclose(rotate_sphere_grid(x, torch.eye(3)[None]), x, atol=1e-5))
    True
    """
    from ._conv import spherical_pad

    x = check_tensor("x", x, ndim=4, floating=True)
    B, C, H, W = x.shape
    R = check_tensor("R", R, shape=(B, 3, 3), floating=True)
    H, W = _check_hw(H, W, "x", "x")
    if B == 0:
        return x.clone()
    dt, dev = x.dtype, x.device
    beta = (torch.arange(H, dtype=dt, device=dev) + 0.5) * (math.pi / H)
    alpha = (torch.arange(W, dtype=dt, device=dev) + 0.5) * (2 * math.pi / W)
    sb, cb = beta.sin()[:, None], beta.cos()[:, None]
    u = torch.stack([sb * alpha.cos()[None], sb * alpha.sin()[None], cb.expand(H, W)], -1)  # (H, W, 3)
    v = torch.einsum("bkl,hwl->bhwk", R.to(dt), u)
    th = torch.arccos(v[..., 2].clamp(-1.0, 1.0))
    ph = torch.remainder(torch.atan2(v[..., 1], v[..., 0]), 2 * math.pi)
    # pixel-centre coordinates in the map padded by one bin on each side
    row = th * (H / math.pi) - 0.5 + 1.0
    col = ph * (W / (2 * math.pi)) - 0.5 + 1.0
    gx = (col + 0.5) * (2.0 / (W + 2)) - 1.0
    gy = (row + 0.5) * (2.0 / (H + 2)) - 1.0
    xp = spherical_pad(x, 1, 1)
    grid = torch.stack([gx, gy], -1)
    return torch.nn.functional.grid_sample(xp, grid, mode="bilinear", padding_mode="border", align_corners=False)


class IBranch(nn.Module):
    """The I-branch: the features resampled in the viewpoint frame (``out(u) = x(R_vp u)``, see
    :func:`rotate_sphere_grid`), a small SPA-SConv stack (a convolution, max-pooling by 2, a
    convolution of stride 2), a 1×1 reduction to ``readout`` channels, the ``H/4 × W/4`` map
    flattened and an MLP regressing a 6D rotation (Gram–Schmidt, :func:`geodl.groups.sixd_to_matrix`)
    -> ``R_ip``.

    The read-out is positional on purpose. In the viewpoint frame the object's axis sits at the
    north pole and its in-plane angle ``γ`` is an azimuth roll of the resampled map; SPA-SConv
    features commute with those rolls, so a global (max / mean) pooling would make ``R_ip``
    invariant to exactly the angle it has to regress (an earlier version did this and could not
    learn the non-symmetric categories). The flattened map keeps where each feature is.

    Parameters
    ----------
    channels : int
        Channels of the input feature map.
    H, W : int
        Map size, both multiples of 4 (pooling by 2, then a stride-2 convolution on a map whose
        width must stay even for the pole padding).
    hidden : int
        Channels of the convolutions and the MLP.
    readout : int
        Channels kept per bin of the ``H/4 × W/4`` map before flattening.
    padding, symmetric
        As in :class:`~geodl.nn.spherical.SPAConv2d`.

    Shapes: ``forward(x (B, channels, H, W), r_vp (B, 3, 3)) -> R_ip (B, 3, 3)``.

    Examples
    --------
    >>> ib = IBranch(8, 8, 16).eval()
    >>> R = ib(torch.randn(2, 8, 8, 16), torch.eye(3).expand(2, 3, 3))
    >>> R.shape, bool(torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5))
    (torch.Size([2, 3, 3]), True)
    """

    def __init__(self, channels: int, H: int, W: int, *, hidden: int = 64, readout: int = 16,
                 padding: str = "spherical", symmetric: bool = True):
        super().__init__()
        from ._conv import SPAConv2d, SphericalMaxPool2d

        self.channels = check_positive_int("channels", channels)
        self.H, self.W = _check_hw(H, W)
        if self.H % 4:
            raise ValueError(f"H: expected a multiple of 4 polar bins (the I-branch pools by 2, then convolves at "
                             f"stride 2), got {H}")
        if self.W % 4:
            raise ValueError(f"W: expected a multiple of 4 azimuth bins (the I-branch pools by 2, then convolves at "
                             f"stride 2 a map whose width must stay even for the pole padding), got {W}")
        hidden = check_positive_int("hidden", hidden)
        readout = check_positive_int("readout", readout)
        cells = (self.H // 4) * (self.W // 4)
        _check_weights("channels", channels, 9 * self.channels * hidden + 9 * hidden * hidden + cells * readout * hidden)
        self.conv = nn.Sequential(
            _conv_block(channels, hidden, padding=padding, symmetric=symmetric),
            SphericalMaxPool2d(2, 2),
            SPAConv2d(hidden, hidden, 3, stride=2, padding=padding, symmetric=symmetric, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, readout, 1), nn.ReLU(inplace=True))
        self.mlp = nn.Sequential(nn.Linear(cells * readout, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 6))
        self.register_buffer("identity_6d", torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), persistent=False)

    @property
    def symmetry(self):
        """Invariance: rolling the map by k whole bins together with ``r_vp -> Rz(2πk/W) r_vp`` (or flipping
        the poles together with ``r_vp -> diag(1, -1, -1) r_vp``) resamples exactly the same grid, so
        ``R_ip`` does not change."""
        from geodl.groups import Symmetry

        return Symmetry(f"equirect:{self.W}", {"x": f"equirect:{self.H}x{self.W}", "r_vp": "rotation"}, "scalar",
                        note="the map and the viewpoint rotation move together; R_ip is invariant")

    def forward(self, x: torch.Tensor, r_vp: torch.Tensor) -> torch.Tensor:
        from geodl.groups import sixd_to_matrix

        x = check_tensor("x", x, shape=(None, self.channels, self.H, self.W), floating=True)
        r_vp = check_tensor("r_vp", r_vp, shape=(x.shape[0], 3, 3), floating=True)
        if x.shape[0] == 0:
            return x.new_zeros(0, 3, 3)
        h = self.conv(rotate_sphere_grid(x, r_vp)).flatten(1)
        return sixd_to_matrix(self.mlp(h) + self.identity_6d.to(h.dtype))
