"""Shared helpers for the geodl.groups tests."""

import math

import torch

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rotations_near_0_and_pi(n: int, seed: int = 0) -> torch.Tensor:
    """Rotations built explicitly (Rodrigues formula in float64) with angles 0, π, 1e-16..1e-1 and
    π − (1e-16..1e-1), about random axes: ``(4n + 2, 3, 3)`` together with their angles."""
    g = gen(seed)
    axis = torch.randn(4 * n + 2, 3, generator=g, dtype=F64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    small = 10.0 ** torch.empty(n, dtype=F64).uniform_(-16, -1, generator=g)
    tiny = 10.0 ** torch.empty(n, dtype=F64).uniform_(-300, -16, generator=g)
    angle = torch.cat([small, tiny, math.pi - small, math.pi - small * 1e-3, torch.tensor([0.0, math.pi], dtype=F64)])
    K = torch.zeros(len(angle), 3, 3, dtype=F64)
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    K = K - K.transpose(-1, -2)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    # 1 - cos computed as 2 sin²(θ/2) keeps the small-angle entries exact
    R = torch.eye(3, dtype=F64) + s * K + 2 * torch.sin(angle / 2)[:, None, None] ** 2 * (K @ K)
    return R, angle
