"""VI-Net (Lin et al., ICCV 2023): category-level rotation estimation on spherical maps,
``R = R_vp @ R_ip`` with the viewpoint ``R_vp`` from bin logits and the in-plane ``R_ip`` regressed."""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_int, check_memory, check_tensor
from geodl.groups import Symmetry

from ._fpn import SphericalFPN, _channels, _resolution
from ._heads import IBranch, VBranch, bin_centres, focal_loss, viewpoint_labels, viewpoint_rotation

__all__ = ["VINet"]


class VINet(nn.Module):
    """VI-Net: point cloud -> spherical maps -> FPN -> V-branch (viewpoint) and I-branch (in-plane).

    The cloud is projected (:func:`~geodl.nn.spherical.spherical_projection`: per-bin maximum
    radius, plus the colour of that point with ``colour=True``), encoded by a
    :class:`SphericalFPN`, the :class:`VBranch` gives polar and azimuth bin logits whose argmax bin
    centres define ``R_vp = Rz(α) Ry(β)``, the :class:`IBranch` resamples the features in the
    viewpoint frame and regresses ``R_ip``; the prediction is ``R = R_vp @ R_ip``.

    **Training** (as in VI-Net): pass the ground truth ``rotation=`` to ``forward`` in training
    mode and the I-branch is run with the viewpoint of the ground-truth bins (the centre of the
    bins of ``R_gt e_z``: the same discretisation it sees at test time) instead of the predicted
    one, so it learns on correct viewpoints; :meth:`loss` then takes the I-branch target
    ``R_vp^T R_gt`` with that ``R_vp`` (``out["r_vp"]``). Without ``rotation=`` (or in eval
    mode) the predicted viewpoint is used. Symmetric categories are not handled here: their
    viewpoint or in-plane labels are ambiguous, and a caller that knows the symmetry should pass a
    canonicalised ``R_gt`` (e.g. the symmetry element closest to the prediction).

    Exact symmetry: invariance of every output under permutations of the points (declared,
    ``perm``). Rotations of the cloud are handled only approximately (viewpoint bins, resampling);
    the map-level symmetries of the FPN are exact (see :class:`SphericalFPN`).

    Parameters
    ----------
    resolution : int or (H, W)
        Map size; H divisible by 4 and W by 8 (the FPN halves the map twice).
    in_channels : tuple of ints
        Channels of the streams: ``(1, 3)`` = radius and colour (the colour stream is used only
        with ``colour=True``); the first must be 1 (the radius).
    channels : tuple of 3 ints
        FPN channels at full, 1/2 and 1/4 resolution.
    padding, symmetric
        As in :class:`~geodl.nn.spherical.SPAConv2d`; ``padding="zeros", symmetric=False`` is the
        plain zero-padded ablation.
    colour : bool
        Whether ``forward`` takes per-point ``features`` (N, in_channels[1]).
    hidden : int
        Channels of the heads.
    min_points : int
        Fewest points a cloud must have (default 3: fewer do not determine a rotation);
        ``forward`` raises ``ValueError`` naming ``pos`` (one cloud) or ``batch`` for a cloud with
        fewer. ``min_points=0`` accepts empty clouds (their map is the projection's fill, so the
        output is the network's answer to an empty map). The check reads the cloud sizes (a host
        sync on CUDA) and is skipped under ``torch.compile``.

    Shapes: ``forward(pos (N, 3), batch (N,) = None, *, num_graphs=None, features (N, F) = None,
    rotation (B, 3, 3) = None)`` -> dict ``rotation (B, 3, 3)``, ``polar_logits (B, H)``,
    ``azimuth_logits (B, W)``, ``r_vp (B, 3, 3)``, ``r_ip (B, 3, 3)``.

    Examples
    --------
    >>> net = VINet(resolution=16, channels=(8, 8, 16), hidden=8).eval()
    >>> out = net(torch.randn(50, 3), torch.arange(2).repeat_interleave(25))
    >>> out["rotation"].shape, out["polar_logits"].shape, out["azimuth_logits"].shape
    (torch.Size([2, 3, 3]), torch.Size([2, 16]), torch.Size([2, 16]))
    >>> loss, logs = net.loss(out, torch.eye(3).expand(2, 3, 3))
    >>> sorted(logs)
    ['azimuth', 'loss', 'polar', 'rotation']
    """

    def __init__(self, resolution=64, in_channels=(1, 3), channels=(32, 64, 128), *, padding: str = "spherical",
                 symmetric: bool = True, colour: bool = False, hidden: int = 32, min_points: int = 3):
        super().__init__()
        self.min_points = check_int("min_points", min_points, min=0)
        self.resolution = _resolution("resolution", resolution)
        c1 = _channels("channels", channels, 3)[0]
        H, W = self.resolution
        check_memory("resolution", resolution, 8 * H * W * c1, "cpu", what=f"feature maps of {H} x {W} bins per cloud")
        in_channels = _channels("in_channels", in_channels)
        if in_channels[0] != 1:
            raise ValueError(f"in_channels: the first stream is the radius map (1 channel), got {in_channels!r}")
        if not isinstance(colour, bool):
            raise TypeError(f"colour: expected a bool, got {type(colour).__name__}")
        if colour and len(in_channels) < 2:
            raise ValueError(f"in_channels: colour=True needs a second stream, got {in_channels!r}")
        self.colour = colour
        self.in_channels = in_channels[:2] if colour else in_channels[:1]
        self.feature_channels = self.in_channels[1] if colour else 0
        H, W = self.resolution
        self.fpn = SphericalFPN(self.in_channels, channels, padding=padding, symmetric=symmetric)
        c = self.fpn.out_channels
        self.v_branch = VBranch(c, H, W, hidden=hidden, padding=padding, symmetric=symmetric)
        self.i_branch = IBranch(c, H, W, hidden=2 * hidden, padding=padding, symmetric=symmetric)

    @property
    def symmetry(self) -> Symmetry:
        in_kinds = {"pos": "node:points", "batch": "batch"}
        if self.colour:
            in_kinds["features"] = "node:scalar"
        out = {k: "scalar" for k in ("rotation", "polar_logits", "azimuth_logits", "r_vp", "r_ip")}
        return Symmetry("perm", in_kinds, out, batch_arg="batch",
                        note="invariant to the order of the points; rotations only approximately (bins)")

    def project(self, pos: torch.Tensor, batch: torch.Tensor | None = None, *, num_graphs: int | None = None,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """The input maps ``(B, 1 + F, H, W)`` (radius, then features)."""
        from ._projection import spherical_projection

        pos = check_tensor("pos", pos, shape=(None, 3), floating=True, finite=True)
        if self.colour:
            if features is None:
                raise TypeError(f"features: required with colour=True, (N, {self.feature_channels})")
            features = check_tensor("features", features, shape=(pos.shape[0], self.feature_channels),
                                    floating=True, finite=True)
        elif features is not None:
            raise TypeError("features: this VINet was built with colour=False; pass no features")
        if self.min_points and not torch.compiler.is_compiling():
            self._check_sizes(pos, batch, num_graphs)
        return spherical_projection(pos, batch, num_graphs=num_graphs, resolution=self.resolution,
                                    features=features)

    def _check_sizes(self, pos, batch, num_graphs) -> None:
        """``ValueError`` for a cloud with fewer than ``min_points`` points."""
        if batch is None:
            if pos.shape[0] < self.min_points:
                raise ValueError(f"pos: the cloud has {pos.shape[0]} points; VINet needs at least "
                                 f"{self.min_points} (min_points=) to estimate a rotation")
            return
        batch = check_tensor("batch", batch, shape=(pos.shape[0],), dtypes=(torch.int64, torch.int32))
        if pos.shape[0] and int(batch.min()) < 0:
            raise ValueError(f"batch: expected non-negative graph ids, got {int(batch.min())}")
        num = check_int("num_graphs", num_graphs, min=0) if num_graphs is not None else (
            int(batch.max()) + 1 if pos.shape[0] else 0)
        if pos.shape[0] and int(batch.max()) >= num:
            return  # the projection reports the inconsistent num_graphs, naming it
        counts = torch.bincount(batch.long(), minlength=num)
        small = (counts < self.min_points).nonzero().flatten()
        if small.numel():
            raise ValueError(f"batch: clouds {small[:10].tolist()} have fewer than {self.min_points} points (counts "
                             f"{counts[small[:10]].tolist()}); VINet needs at least {self.min_points} per cloud "
                             "(min_points=)")

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None, *, num_graphs: int | None = None,
                features: torch.Tensor | None = None, rotation: torch.Tensor | None = None) -> dict:
        H, W = self.resolution
        maps = self.project(pos, batch, num_graphs=num_graphs, features=features).to(pos.dtype)
        B = maps.shape[0]
        feat = self.fpn(maps)
        polar, azimuth = self.v_branch(feat)
        if rotation is not None and self.training:
            rotation = check_tensor("rotation", rotation, shape=(B, 3, 3), floating=True, finite=True)
            pb, ab = viewpoint_labels(rotation, H, W)
        else:
            pb, ab = polar.argmax(-1), azimuth.argmax(-1)
        alpha, beta = bin_centres(pb, ab, H, W, dtype=feat.dtype)
        r_vp = viewpoint_rotation(alpha, beta)
        r_ip = self.i_branch(feat, r_vp)
        return dict(rotation=r_vp @ r_ip, polar_logits=polar, azimuth_logits=azimuth, r_vp=r_vp, r_ip=r_ip)

    def loss(self, out: dict, R_gt: torch.Tensor, *, gamma: float = 2.0, jitter: int = 0,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Training loss: focal losses on the polar and azimuth bins of ``R_gt e_z`` (labels
        clamped at the poles; optional unbiased ``jitter``, see
        :func:`~geodl.nn.spherical.viewpoint_labels`) plus the mean Frobenius distance
        ``‖R_ip − R_vpᵀ R_gt‖`` of the I-branch (``R_vp = out["r_vp"]``).

        Returns ``(loss (), logs)`` with ``logs`` a dict of floats ``loss``, ``polar``,
        ``azimuth``, ``rotation``.
        """
        if not isinstance(out, dict) or not {"polar_logits", "azimuth_logits", "r_vp", "r_ip"} <= set(out):
            raise TypeError("out: expected the dict returned by VINet.forward")
        H, W = self.resolution
        B = out["r_ip"].shape[0]
        R_gt = check_tensor("R_gt", R_gt, shape=(B, 3, 3), floating=True, finite=True)
        jitter = check_int("jitter", jitter, min=0)
        pb, ab = viewpoint_labels(R_gt, H, W, jitter=jitter, generator=generator)
        lp = focal_loss(out["polar_logits"], pb.to(out["polar_logits"].device), gamma)
        la = focal_loss(out["azimuth_logits"], ab.to(out["azimuth_logits"].device), gamma)
        target = out["r_vp"].detach().transpose(-1, -2) @ R_gt.to(out["r_vp"].dtype)
        diff = (out["r_ip"] - target).flatten(1)
        lr = diff.norm(dim=1).mean() if B else diff.sum() * 0.0
        loss = lp + la + lr
        logs = dict(loss=float(loss.detach()), polar=float(lp.detach()), azimuth=float(la.detach()),
                    rotation=float(lr.detach()))
        return loss, logs
