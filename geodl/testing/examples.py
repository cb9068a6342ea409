"""Example models for the equivariance harness: two correct ones and deliberately broken ones.

Every model takes node positions ``pos`` ``(N, 3)`` (kind ``node:points``); the factories are
zero-argument callables, so ``geodl check geodl.testing.examples:FACTORY ...`` can build them.

=====================  ====================  ===========================================================
factory                output kind           symmetry
=====================  ====================  ===========================================================
``invariant_model``    ``scalar``            E(3) x permutations (per graph with ``batch``)
``equivariant_model``  ``node:vectors``      E(3) x permutations
``noninvariant_model`` ``scalar``            permutations only (reads raw coordinates)
``chiral_model``       ``scalar``            SE(3) x permutations, *not* reflections (a pseudoscalar)
``icosahedral_model``  ``scalar``            icosahedral x translations x permutations, *not* SO(3)
``nonperm_model``      ``node:scalar``       E(3), *not* permutations (a running sum over node order)
=====================  ====================  ===========================================================
"""

from __future__ import annotations

import torch
from torch import nn

from geodl._checks import check_index, check_tensor
from geodl.groups import Symmetry

__all__ = [
    "PairwiseDistanceEnergy",
    "ScaledDisplacement",
    "RawCoordinateEnergy",
    "ChiralityScore",
    "IcosahedralInvariant",
    "CumulativeNorm",
    "BatchCentredDisplacement",
    "UnsavedScaleEnergy",
    "CallCountingEnergy",
    "RandomOrderMax",
    "SelfPairDistanceEnergy",
    "DataDependentEnergy",
    "invariant_model",
    "equivariant_model",
    "noninvariant_model",
    "chiral_model",
    "icosahedral_model",
    "nonperm_model",
    "batch_mixing_model",
    "unsaved_state_model",
    "stateful_forward_model",
    "random_draw_model",
    "nan_gradient_model",
    "compile_break_model",
]

_POINTS = Symmetry("E3+perm", {"pos": "node:points"}, "scalar")
_POINTS_BATCH = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "scalar", batch_arg="batch")


def _graph_mean(x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Per-graph mean of the rows of ``x`` ``(N, C)``: ``(G, C)``."""
    n_graphs = int(batch.max()) + 1
    total = x.new_zeros(n_graphs, x.shape[1]).index_add_(0, batch, x)
    count = x.new_zeros(n_graphs).index_add_(0, batch, torch.ones_like(x[:, 0]))
    return total / count[:, None]


def _centred(pos: torch.Tensor) -> torch.Tensor:
    check_tensor("pos", pos, shape=(None, 3), floating=True, min_rows=1)
    return pos - pos.mean(0)


class PairwiseDistanceEnergy(nn.Module):
    """E(3)- and permutation-invariant energy ``sum_{i<j} d_ij + exp(-d_ij**2)`` per graph.

    Examples
    --------
    >>> import torch
    >>> pos = torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0]])
    >>> round(float(PairwiseDistanceEnergy()(pos)), 4)
    5.0
    >>> PairwiseDistanceEnergy()(torch.randn(5, 3), batch=torch.tensor([0, 0, 1, 1, 1])).shape
    torch.Size([2])
    """

    symmetry = _POINTS_BATCH

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        check_tensor("pos", pos, shape=(None, 3), floating=True)
        n = pos.shape[0]
        i, j = torch.triu_indices(n, n, 1, device=pos.device)
        d = (pos[i] - pos[j]).norm(dim=-1)  # explicit differences: cdist's matmul route loses translations
        e = d + torch.exp(-d * d)
        if batch is None:
            return e.sum()
        check_tensor("batch", batch, shape=(n,))
        check_index("batch", batch)
        n_graphs = int(batch.max()) + 1 if n else 0
        same = batch[i] == batch[j]
        return e.new_zeros(n_graphs).index_add_(0, batch[i][same], e[same])


class ScaledDisplacement(nn.Module):
    """E(3)- and permutation-equivariant vectors: centroid-relative positions scaled by an invariant.

    ``v_i = (x_i - c) * (1 + tanh(mean_j |x_j - c|))``.

    Examples
    --------
    >>> import torch
    >>> v = ScaledDisplacement()(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
    >>> v[:, 0]
    tensor([ 1.7616, -1.7616])

    With ``batch`` (graph id per node), centroid and scale are per graph.
    """

    symmetry = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "node:vectors", batch_arg="batch")

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        if batch is None:
            a = _centred(pos)
            return a * (1 + torch.tanh(a.norm(dim=-1).mean()))
        check_tensor("pos", pos, shape=(None, 3), floating=True, min_rows=1)
        check_tensor("batch", batch, shape=(pos.shape[0],))
        a = pos - _graph_mean(pos, batch)[batch]
        r = _graph_mean(a.norm(dim=-1, keepdim=True), batch)[batch]
        return a * (1 + torch.tanh(r))


class RawCoordinateEnergy(nn.Module):
    """Broken: the pairwise energy plus ``sum_i x_i`` (first coordinate) — only permutation-invariant.

    Examples
    --------
    >>> import torch
    >>> pos = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    >>> model = RawCoordinateEnergy()
    >>> bool(torch.isclose(model(pos.flip(0)), model(pos))), bool(torch.isclose(model(pos + 1), model(pos)))
    (True, False)
    """

    symmetry = _POINTS  # declared, and broken: only permutation-invariant

    def __init__(self):
        super().__init__()
        self.energy = PairwiseDistanceEnergy()

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return self.energy(pos) + pos[:, 0].sum()


class ChiralityScore(nn.Module):
    """Broken for reflections: a pseudoscalar, invariant under SE(3) and permutations only.

    ``det[m_1, m_2, m_3]`` with ``m_k = mean_i |a_i|**k a_i`` and ``a_i = x_i - c``: rotations keep
    the determinant, a reflection flips its sign.

    Examples
    --------
    >>> import torch
    >>> pos = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    >>> mirror = pos * torch.tensor([-1.0, 1.0, 1.0])
    >>> bool(torch.isclose(ChiralityScore()(mirror), -ChiralityScore()(pos)))
    True
    """

    symmetry = _POINTS  # declared, and broken for reflections

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        a = _centred(pos)
        r = a.norm(dim=-1, keepdim=True)
        m = torch.stack([(r ** k * a).mean(0) for k in (1, 2, 3)])
        return torch.linalg.det(m)


class IcosahedralInvariant(nn.Module):
    """Broken for SO(3): invariant under the icosahedral group (and translations, permutations) only.

    ``sum_i sum_{g in I} (u · g a_i)**6 - (60 / 7) |a_i|**6`` for a fixed generic unit vector ``u``,
    ``a_i = x_i - c``: averaging over the 60 rotations of :func:`geodl.groups.finite_group` makes it
    icosahedral-invariant; subtracting the sphere average ``60/7 |a|**6`` leaves the degree-6
    harmonic part (the lowest degree with an icosahedral invariant), which rotations change.

    Examples
    --------
    >>> import torch
    >>> from geodl.groups import finite_group
    >>> model = IcosahedralInvariant().double()
    >>> pos = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> g = finite_group("icosahedral")[7]
    >>> bool(torch.isclose(model(pos @ g.T), model(pos)))
    True
    """

    symmetry = _POINTS  # declared, and broken for SO(3)

    def __init__(self):
        super().__init__()
        from geodl.groups import finite_group

        u = torch.tensor([0.3, -0.5, 0.8124], dtype=torch.float64)
        # orbit of u: rows g^T u, so that (g^T u) . a = u . (g a)
        self.register_buffer("orbit", finite_group("icosahedral").transpose(1, 2) @ (u / u.norm()))

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        a = _centred(pos)
        proj = a @ self.orbit.to(a.dtype).T  # (N, 60)
        r2 = (a * a).sum(-1)
        return ((proj ** 6).sum(-1) - (60.0 / 7.0) * r2 ** 3).sum()


class CumulativeNorm(nn.Module):
    """Broken for permutations: ``y_i = sum_{j <= i} |x_j - c|`` depends on the node order (E(3)-invariant).

    Examples
    --------
    >>> import torch
    >>> CumulativeNorm()(torch.tensor([[1.0, 0, 0], [-1.0, 0, 0]]))
    tensor([1., 2.])
    """

    symmetry = Symmetry("E3+perm", {"pos": "node:points"}, "node:scalar")  # broken for perm

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        return _centred(pos).norm(dim=-1).cumsum(0)


def _pair_energy(pos: torch.Tensor) -> torch.Tensor:
    """``d_ij + exp(-d_ij**2)`` over the pairs ``i < j``, ``(N (N - 1) / 2,)``."""
    n = pos.shape[0]
    i, j = torch.triu_indices(n, n, 1, device=pos.device)
    d = (pos[i] - pos[j]).norm(dim=-1)
    return d + torch.exp(-d * d)


class BatchCentredDisplacement(nn.Module):
    """Broken for batching: :class:`ScaledDisplacement` that centres by the whole batch's mean.

    Equivariant under E(3) x permutations (the same element moves every graph), but a graph's output
    depends on the other graphs of its batch.

    Examples
    --------
    >>> import torch
    >>> pos, batch = torch.tensor([[1.0, 0, 0], [3.0, 0, 0]]), torch.tensor([0, 1])
    >>> BatchCentredDisplacement()(pos, batch)[:, 0]  # each graph alone would give zeros
    tensor([-1.7616,  1.7616])
    """

    symmetry = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "node:vectors", batch_arg="batch")

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        a = _centred(pos)  # bug: ignores batch
        return a * (1 + torch.tanh(a.norm(dim=-1).mean()))


class UnsavedScaleEnergy(nn.Module):
    """Broken for ``state_dict``: a learnt weight times a scale kept in a plain tensor attribute.

    ``calibrate`` sets ``scale``; it is neither a parameter nor a buffer, so ``state_dict`` does not
    carry it and a loaded copy keeps its own.

    Examples
    --------
    >>> import torch
    >>> model = UnsavedScaleEnergy()
    >>> "scale" in model.state_dict(), sorted(model.state_dict())
    (False, ['weight'])
    """

    symmetry = _POINTS

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.5))
        self.scale = torch.tensor(2.0)  # bug: should be self.register_buffer("scale", ...)

    def calibrate(self, pos: torch.Tensor) -> None:
        """Set ``scale`` to the inverse mean pair energy of ``pos``."""
        self.scale = (1.0 / _pair_energy(pos).mean()).detach()

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        check_tensor("pos", pos, shape=(None, 3), floating=True)
        return self.weight * self.scale.to(pos.dtype) * _pair_energy(pos).sum()


class CallCountingEnergy(nn.Module):
    """Broken for side effects: :class:`PairwiseDistanceEnergy` that counts its calls in a buffer.

    The counter is incremented in eval mode too, so evaluating the model changes its state.

    Examples
    --------
    >>> import torch
    >>> model = CallCountingEnergy().eval()
    >>> _ = model(torch.randn(4, 3)); _ = model(torch.randn(4, 3))
    >>> int(model.calls)
    2
    """

    symmetry = _POINTS_BATCH

    def __init__(self):
        super().__init__()
        self.energy = PairwiseDistanceEnergy()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, pos: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1  # bug: state updated on every call
        return self.energy(pos, batch)


class RandomOrderMax(nn.Module):
    """Broken for side effects: the largest pair energy, found in an order drawn from the global RNG.

    The output does not depend on the order, but every call advances torch's global generator.

    Examples
    --------
    >>> import torch
    >>> pos = torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0], [0.0, 1.0, 0]])
    >>> state = torch.get_rng_state()
    >>> round(float(RandomOrderMax()(pos)), 4), torch.equal(state, torch.get_rng_state())
    (5.0, False)
    """

    symmetry = _POINTS

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        check_tensor("pos", pos, shape=(None, 3), floating=True)
        e = _pair_energy(pos)
        order = torch.randperm(e.shape[0], device=e.device)  # bug: global RNG
        return e[order].max()


class SelfPairDistanceEnergy(nn.Module):
    """Broken for gradients: ``sum_{i,j} sqrt(|x_i - x_j|**2)`` over all pairs, self-pairs included.

    The value is right (half of it is the pairwise distance sum), but ``sqrt`` at the zero
    self-distances has an infinite derivative: the gradient with respect to ``pos`` is NaN.

    Examples
    --------
    >>> import torch
    >>> pos = torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0]], requires_grad=True)
    >>> energy = SelfPairDistanceEnergy()(pos)
    >>> float(energy), bool(torch.autograd.grad(energy, pos)[0].isnan().any())
    (10.0, True)
    """

    symmetry = _POINTS

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        check_tensor("pos", pos, shape=(None, 3), floating=True)
        diff = pos[:, None, :] - pos[None, :, :]
        return (diff * diff).sum(-1).sqrt().sum()  # bug: sqrt(0) on the diagonal


class DataDependentEnergy(nn.Module):
    """Broken for ``torch.compile(fullgraph=True)``: a Python branch on a tensor's value.

    Returns the pair energy sum, clamped at ``1e6`` by an ``if`` on ``float(...)`` (a graph break).

    Examples
    --------
    >>> import torch
    >>> round(float(DataDependentEnergy()(torch.tensor([[0.0, 0, 0], [3.0, 4.0, 0]]))), 4)
    5.0
    """

    symmetry = _POINTS

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        check_tensor("pos", pos, shape=(None, 3), floating=True)
        e = _pair_energy(pos).sum()
        if float(e.detach()) > 1e6:  # bug: host sync and data-dependent control flow
            return e.new_tensor(1e6)
        return e


# The factories `geodl check` and the tests use: each class is a zero-argument callable that
# returns the model, so the factory names are aliases.
invariant_model = PairwiseDistanceEnergy  # node:points -> scalar, E(3) x perm invariant
equivariant_model = ScaledDisplacement  # node:points -> node:vectors, E(3) x perm equivariant
noninvariant_model = RawCoordinateEnergy  # fails rotations, reflections and translations
chiral_model = ChiralityScore  # fails reflections
icosahedral_model = IcosahedralInvariant  # fails SO(3), passes "icosahedral"
nonperm_model = CumulativeNorm  # fails permutations
batch_mixing_model = BatchCentredDisplacement  # fails batching
unsaved_state_model = UnsavedScaleEnergy  # fails state_dict
stateful_forward_model = CallCountingEnergy  # fails side_effects (a buffer)
random_draw_model = RandomOrderMax  # fails side_effects (the global RNG)
nan_gradient_model = SelfPairDistanceEnergy  # fails gradients
compile_break_model = DataDependentEnergy  # fails compile
