"""Modified inertia: the mixed-symmetry regression of the soft-equivariance benchmark (procedural).

Five point masses ``m_i = softplus(z_i)``, ``z_i ~ N(0, 1)``, at positions ``x_i ~ N(0, I₃)``; the input is
``X = [m_1..m_5, x_1, .., x_5]`` (20 numbers: the masses, then the positions row by row), the kind
``"5xscalars+5xpoints"`` of :class:`geodl.nn.soft_equivariance.Rep`. The target is the inertia tensor

    I = Σ_i m_i (‖x_i‖² I₃ − x_i x_iᵀ),     Y = I + noise · (I e_a) e_aᵀ   (row-major, 9 numbers)

The first term is O(3)-equivariant (``Y(RX) = R Y(X) Rᵀ``); the second is equivariant under the rotations
about the axis ``e_a`` and the reflections through planes containing it, which fix ``e_a``: the symmetry
breaks from O(3) to O(2) about ``a``. (Being quadratic in ``e_a``, it is also equivariant under the elements
that send ``e_a`` to ``−e_a``, e.g. ``−I``: exactly the stabiliser of the line, O(2) × Z₂.) ``noise = 0`` is
the plain inertia tensor.

Each split is drawn from its own random stream, seeded from ``seed`` and the split's name. (The reference
code seeds every split from its size, so a train and a test set of equal size come out identical.)
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from geodl._checks import check_choice, check_int, check_memory, check_number, check_tensor

__all__ = ["ModifiedInertia", "inertia_tensor"]

N_MASSES = 5
_SPLITS = ("train", "val", "test")


def inertia_tensor(masses: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``Σ_i m_i (‖x_i‖² I₃ − x_i x_iᵀ)`` for masses (..., k) and positions (..., k, 3): (..., 3, 3).

    Examples
    --------
    >>> import torch
    >>> inertia_tensor(torch.tensor([2.0]), torch.tensor([[1.0, 0.0, 0.0]]))
    tensor([[0., 0., 0.],
            [0., 2., 0.],
            [0., 0., 2.]])
    """
    positions = check_tensor("positions", positions, shape=(..., None, 3), floating=True)
    masses = check_tensor("masses", masses, floating=True)
    if masses.shape != positions.shape[:-1]:
        raise ValueError(f"masses: expected shape {tuple(positions.shape[:-1])} (positions' without the last), "
                         f"got {tuple(masses.shape)}")
    r2 = (positions * positions).sum(-1)
    eye = torch.eye(3, dtype=positions.dtype, device=positions.device)
    outer = positions[..., :, None] * positions[..., None, :]
    return (masses[..., None, None] * (r2[..., None, None] * eye - outer)).sum(-3)


def _split_seed(seed: int, split: str) -> int:
    # a fixed, documented mixing of (seed, split): every split its own stream, whatever the sizes
    return (seed * 1_000_003 + 7_919 * (_SPLITS.index(split) + 1)) % (2**63 - 1)


class ModifiedInertia(Dataset):
    """The modified-inertia regression: ``X`` (n, 20) -> ``Y`` (n, 9), O(3) broken to O(2) about an axis.

    Parameters
    ----------
    n : int
        Number of samples (default 3,000), at most 10⁸.
    noise : float
        Strength of the O(2)-only term ``noise · (I e_a) e_aᵀ`` (≥ 0; the benchmark uses 0.3 and 0.9).
    axis : int
        The axis ``a`` in {0, 1, 2} (x, y, z).
    split : {"train", "val", "test"}
        Which stream to draw from.
    seed : int
        The base seed (≥ 0); each split mixes its name into it.
    dtype : torch.dtype
        float32 (default) or float64.

    Attributes
    ----------
    x : Tensor (n, 20)
        The masses, then the positions ``x_1 .. x_5`` (xyz each).
    y : Tensor (n, 9)
        The target, row-major.
    masses : Tensor (n, 5);  positions : Tensor (n, 5, 3)

    Examples
    --------
    >>> train = ModifiedInertia(100, noise=0.3, split="train")
    >>> test = ModifiedInertia(100, noise=0.3, split="test")
    >>> train.x.shape, train.y.shape, bool((train.x != test.x).any())
    (torch.Size([100, 20]), torch.Size([100, 9]), True)
    >>> x, y = train[0]
    >>> x.shape, y.shape
    (torch.Size([20]), torch.Size([9]))
    """

    def __init__(self, n: int = 3000, noise: float = 0.3, axis: int = 2, split: str = "train", seed: int = 0,
                 dtype: torch.dtype = torch.float32):
        self.n = check_int("n", n, min=1, max=10**8)
        self.noise = check_number("noise", noise, nonnegative=True)
        self.axis = check_int("axis", axis, min=0, max=2)
        self.split = check_choice("split", split, _SPLITS)
        self.seed = check_int("seed", seed, min=0)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        check_memory("n", self.n, self.n * (20 + 9 + 9) * 8 * 2, torch.device("cpu"), what="the dataset")
        g = torch.Generator().manual_seed(_split_seed(self.seed, self.split))
        z = torch.randn(self.n, N_MASSES, generator=g, dtype=torch.float64)
        pos = torch.randn(self.n, N_MASSES, 3, generator=g, dtype=torch.float64)
        m = torch.nn.functional.softplus(z)
        inertia = inertia_tensor(m, pos)
        e = torch.zeros(3, dtype=torch.float64)
        e[self.axis] = 1.0
        y = inertia + self.noise * (inertia @ e)[..., :, None] * e
        self.masses, self.positions = m.to(dtype), pos.to(dtype)
        self.x = torch.cat([m, pos.reshape(self.n, -1)], dim=1).to(dtype)
        self.y = y.reshape(self.n, 9).to(dtype)

    rep_in = "5xscalars+5xpoints"
    rep_out = "tensor2"

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, bool) or not isinstance(i, int):
            raise TypeError(f"index: expected an int, got {type(i).__name__}")
        if not -self.n <= i < self.n:
            raise IndexError(f"index: {i} is out of range for {self.n} samples")
        return self.x[i], self.y[i]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` as a pair of tensors (n, 20), (n, 9)."""
        return self.x, self.y

    def __repr__(self) -> str:
        return (f"ModifiedInertia(n={self.n}, noise={self.noise}, axis={self.axis}, split={self.split!r}, "
                f"seed={self.seed})")
