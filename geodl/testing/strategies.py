"""Hypothesis strategies for geometric tests: point clouds with a chosen covariance spectrum
(including near-degenerate ones), rotations, small graphs.

Importing this module imports hypothesis (the ``test`` extra); nothing else in geodl does.

Random draws inside a strategy come from a torch generator seeded by a hypothesis-drawn integer,
so every example is reproducible and hypothesis can replay it.
"""

from __future__ import annotations

import math

import torch
from hypothesis import strategies as st

from geodl._checks import check_choice, check_int

__all__ = ["point_clouds", "rotations", "small_graphs", "spectra"]

_SPECTRUM_KINDS = ("any", "near_degenerate", "degenerate")


def _size(arg: str, value, lo: int) -> st.SearchStrategy:
    """``int`` -> just it; ``(a, b)`` -> integers in [a, b]; a strategy -> itself."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return st.just(check_int(arg, value, min=lo))
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        if not lo <= value[0] <= value[1]:
            raise ValueError(f"{arg}: expected (min, max) with {lo} <= min <= max, got {value}")
        return st.integers(*value)
    raise TypeError(f"{arg}: expected an int, a (min, max) tuple or a strategy, got {type(value).__name__}")


@st.composite
def _spectrum(draw, dim: int, kind: str, gap: tuple[float, float]):
    # eigenvalues (variances) log-uniform in [0.1, 10], sorted descending
    lam = sorted((10 ** draw(st.floats(-1.0, 1.0)) for _ in range(dim)), reverse=True)
    if kind == "any":
        return tuple(lam)
    i = draw(st.integers(0, dim - 2))  # the pair (i, i+1) is made (nearly) equal
    if kind == "degenerate":
        lam[i + 1] = lam[i]
    else:
        rel = 10 ** draw(st.floats(math.log10(gap[0]), math.log10(gap[1])))
        lam[i + 1] = lam[i] / (1 + rel)
    return tuple(sorted(lam, reverse=True))


def spectra(dim: int = 3, kind: str = "any", gap: tuple[float, float] = (1e-8, 1e-3)) -> st.SearchStrategy:
    """Covariance eigenvalues ``(dim,)`` (descending, in [0.1, 10]).

    Parameters
    ----------
    dim : int
        2 or 3.
    kind : str
        ``"any"`` (independent log-uniform), ``"near_degenerate"`` (one adjacent pair with relative
        gap ``(λ_i - λ_{i+1}) / λ_{i+1}`` log-uniform in ``gap``) or ``"degenerate"`` (one exact tie).
    gap : (float, float)
        Range of the relative gap for ``"near_degenerate"``.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=20, deadline=None)
    ... @given(spectra(kind="near_degenerate"))
    ... def test(lam):
    ...     assert min(a / b - 1 for a, b in zip(lam, lam[1:])) <= 1e-3
    >>> test()
    """
    check_choice("dim", dim, (2, 3))
    check_choice("kind", kind, _SPECTRUM_KINDS)
    if not (len(gap) == 2 and 0 < gap[0] <= gap[1]):
        raise ValueError(f"gap: expected (lo, hi) with 0 < lo <= hi, got {gap!r}")
    return _spectrum(dim, kind, tuple(gap))


@st.composite
def _clouds(draw, n, dim, spectrum, dtype, translate):
    n = draw(n)
    lam = torch.as_tensor(draw(spectrum), dtype=torch.float64)
    if lam.shape != (dim,) or not bool((lam > 0).all()):
        raise ValueError(f"spectrum: expected {dim} positive eigenvalues, got {tuple(lam.tolist())}")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    z = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    z = z - z.mean(0)
    # Whiten, so that the sample covariance z.T z / n is exactly the identity (n > dim points in
    # general position); then the cloud's covariance has exactly the drawn eigenvalues.
    evals, evecs = torch.linalg.eigh(z.T @ z / n)
    z = z @ evecs @ torch.diag(evals.rsqrt())
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    basis = q * torch.sign(torch.diagonal(r))  # Haar-random orthogonal principal axes
    x = (z * lam.sqrt()) @ basis.T
    if translate:
        x = x + 3 * torch.randn(dim, generator=gen, dtype=torch.float64)
    return x.to(dtype)


def point_clouds(n=(8, 32), dim: int = 3, spectrum="any", *, dtype: torch.dtype = torch.float64,
                 translate: bool = True) -> st.SearchStrategy:
    """Point clouds ``(n, dim)`` whose covariance has a controlled spectrum.

    The sample covariance ``(x - c).T (x - c) / n`` has exactly the drawn eigenvalues (up to
    rounding), with Haar-random principal axes, so near-degenerate and tied spectra, the hard cases
    of PCA frames, are produced on purpose.

    Parameters
    ----------
    n : int, (int, int) or strategy
        Number of points (at least ``dim + 1``).
    dim : int
        2 or 3.
    spectrum : str, sequence of float or strategy
        ``"any"``, ``"near_degenerate"``, ``"degenerate"`` (see :func:`spectra`), fixed eigenvalues
        (variances along the principal axes, e.g. ``(4.0, 1.0, 1.0 + 1e-6)``), or a strategy of them.
    dtype : torch.dtype
        Output dtype (generated in float64).
    translate : bool
        Move the centroid to a random point (otherwise it is the origin).

    Examples
    --------
    >>> import torch
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, deadline=None)
    ... @given(point_clouds(n=10, spectrum=(4.0, 1.0, 1.0 + 1e-6)))
    ... def test(x):
    ...     a = x - x.mean(0)
    ...     lam = torch.linalg.eigvalsh(a.T @ a / 10)
    ...     assert torch.allclose(lam, torch.tensor([1.0, 1.0 + 1e-6, 4.0], dtype=torch.float64))
    >>> test()
    """
    check_choice("dim", dim, (2, 3))
    if isinstance(spectrum, str):
        spectrum = spectra(dim, spectrum)
    elif not isinstance(spectrum, st.SearchStrategy):
        try:
            values = tuple(float(v) for v in spectrum)
        except TypeError:
            raise TypeError(f"spectrum: expected a str, a sequence of floats or a strategy, "
                            f"got {type(spectrum).__name__}") from None
        if len(values) != dim or not all(v > 0 and math.isfinite(v) for v in values):
            raise ValueError(f"spectrum: expected {dim} positive finite eigenvalues, got {values}")
        spectrum = st.just(values)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return _clouds(_size("n", n, dim + 1), dim, spectrum, dtype, translate)


@st.composite
def _rotations(draw, dim, proper, dtype):
    from geodl.groups import axis_angle_to_matrix, random_rotation, random_rotation_2d, rotation_2d

    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    special = draw(st.sampled_from(["haar", "haar", "identity", "small", "half_turn"]))
    if dim == 2:
        angle = {"identity": 0.0, "small": 1e-7, "half_turn": math.pi}.get(special)
        R = (random_rotation_2d(generator=gen, dtype=torch.float64) if angle is None
             else rotation_2d(torch.tensor(angle, dtype=torch.float64)))
    elif special == "haar":
        R = random_rotation(generator=gen, dtype=torch.float64)
    else:
        axis = torch.randn(3, generator=gen, dtype=torch.float64)
        angle = {"identity": 0.0, "small": 1e-7, "half_turn": math.pi - 1e-12}[special]
        R = axis_angle_to_matrix(axis / axis.norm() * angle)
    if not proper and draw(st.booleans()):
        R = R.clone()
        R[:, 0] = -R[:, 0]  # an improper element: R @ diag(-1, 1, ...)
    return R.to(dtype)


def rotations(dim: int = 3, *, proper: bool = True, dtype: torch.dtype = torch.float64) -> st.SearchStrategy:
    """Rotation matrices ``(dim, dim)``: Haar-random, plus the identity, tiny angles and half turns.

    With ``proper=False``, half of them are improper (determinant -1).

    Examples
    --------
    >>> import torch
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=10, deadline=None)
    ... @given(rotations())
    ... def test(R):
    ...     assert torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype))
    ...     assert torch.linalg.det(R) > 0
    >>> test()
    """
    check_choice("dim", dim, (2, 3))
    return _rotations(dim, bool(proper), dtype)


@st.composite
def _graphs(draw, n_nodes, directed, self_loops, max_edges):
    n = draw(n_nodes)
    pairs = [(i, j) for i in range(n) for j in range(n) if (self_loops or i != j) and (directed or i <= j)]
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=max_edges)) if pairs else []
    if not directed:
        chosen = chosen + [(j, i) for i, j in chosen if i != j]
    edge_index = torch.tensor(chosen, dtype=torch.long).reshape(-1, 2).T.contiguous()
    return edge_index, n


def small_graphs(n_nodes=(1, 8), *, directed: bool = False, self_loops: bool = False,
                 max_edges: int = 20) -> st.SearchStrategy:
    """Small graphs as ``(edge_index (2, E) long, num_nodes)``.

    Parameters
    ----------
    n_nodes : int, (int, int) or strategy
        Number of nodes (at least 1).
    directed : bool
        If false, every edge is present in both directions.
    self_loops : bool
        Allow ``(i, i)`` edges.
    max_edges : int
        Maximum number of distinct (undirected) edges drawn.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> @settings(max_examples=20, deadline=None)
    ... @given(small_graphs(n_nodes=(2, 5)))
    ... def test(graph):
    ...     edge_index, n = graph
    ...     assert edge_index.shape[0] == 2 and (edge_index < n).all()
    >>> test()
    """
    check_int("max_edges", max_edges, min=0)
    return _graphs(_size("n_nodes", n_nodes, 1), bool(directed), bool(self_loops), max_edges)
