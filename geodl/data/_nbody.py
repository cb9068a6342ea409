"""Charged n-body trajectories generated like the EGNN protocol.

The EGNN paper (Satorras et al., ICML 2021, "nbody_small") built its data with the charged-particles
simulator of Kipf et al. (NRI, 2018); the frame-averaging paper (Puny et al., ICLR 2022) reuses
that data. The constants below are those of the EGNN generator (``n_body_system/dataset``):

========================  ===========================================================
particles                 5, charges ±1 with probability 1/2 each (no neutral ones)
interaction               F_i = k Σ_j q_i q_j (x_i − x_j) / |x_i − x_j|³, k = 1 (like charges
                          repel); each component of the total force clipped to ±0.1/dt = ±100
time step                 dt = 0.001, leapfrog (half kick, then drift/kick), 3-D, no noise
initial state             positions ~ N(0, 1) per coordinate (loc_std 1); velocities of norm
                          exactly 0.5 in a uniformly random direction; positions outside the
                          box ±5 are reflected once at t = 0, after which there is no box
sampling                  every 100 steps; frame k is the state after 100 (k + 1) steps
input → target            frame 30 (positions, velocities, charges) → positions of frame 40,
                          i.e. 1,000 integration steps later
splits                    3,000 train / 2,000 validation / 2,000 test trajectories
========================  ===========================================================

The saved velocity is the leapfrog velocity used in the drift that produced the saved positions
(as in the reference). The random streams differ from the reference's numpy ones, so the
trajectories are statistically alike, not identical. Integration runs in float64, vectorised over
trajectories (7,000 trajectories take seconds), and the result is cached as a ``.pt`` file under
``geodl.data.default_root() / "nbody"`` (written atomically), keyed by every setting. A cache file
that does not load or has the wrong shapes or dtypes is regenerated with a ``RuntimeWarning``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from geodl._checks import check_int, check_memory, check_number, check_positive_int
from geodl._io import atomic_torch_save

__all__ = ["NBodyDataset", "generate_nbody"]

SPLITS = {"train": 0, "val": 1, "test": 2}


def _pair_incidence(n: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs i < j and the (n, P) incidence matrix M with M[i, p] = 1, M[j, p] = -1."""
    i, j = torch.triu_indices(n, n, 1, device=device)
    m = torch.zeros(n, i.numel(), dtype=dtype, device=device)
    p = torch.arange(i.numel(), device=device)
    m[i, p] = 1.0
    m[j, p] = -1.0
    return i, j, m


def _forces(x: torch.Tensor, qq_pair: torch.Tensor, inc: torch.Tensor, strength: float,
            max_force: float) -> torch.Tensor:
    """Clipped Coulomb-like forces in a coordinate-major layout.

    x (3, T, n); qq_pair (T, P) charge products of the pairs; inc (n, P) incidence matrix.
    Pair differences and the scatter back to particles are two small matmuls, which is several
    times faster than the dense (T, n, n, 3) form on the CPU.
    """
    diff = x @ inc  # (3, T, P): x_i - x_j
    r2 = (diff * diff).sum(0)
    s = (strength * qq_pair) / (r2 * r2.sqrt())
    return ((diff * s) @ inc.T).clamp_(-max_force, max_force)


def _check_nbody_memory(name: str, value, num: int, n_particles: int, device) -> None:
    """``ValueError`` naming ``name`` before allocating when ``num`` trajectories of ``n_particles``
    would not fit: the pair tables (``(n, P)`` incidence, ``P = n(n-1)/2`` pairs) and, per
    trajectory, ~10 copies of the ``(n, 3)`` state (saved frames, leapfrog temporaries) and ~10
    values per pair (differences, distances, forces), all float64."""
    pairs = n_particles * (n_particles - 1) // 2
    check_memory("n_particles", n_particles, 8 * (n_particles * pairs + 4 * pairs), "cpu",
                 what=f"the pair tables of {n_particles} particles ({pairs} pairs)")
    per_trajectory = 8 * (30 * n_particles + 10 * pairs)
    check_memory(name, value, num * per_trajectory, device, what=f"{num} trajectories of {n_particles} particles")


def generate_nbody(num: int, *, seed: int = 0, n_particles: int = 5, frame_in: int = 30,
                   frame_out: int = 40, sample_freq: int = 100, dt: float = 0.001,
                   loc_std: float = 1.0, vel_norm: float = 0.5, interaction_strength: float = 1.0,
                   box_size: float = 5.0, device="cpu") -> dict[str, torch.Tensor]:
    """Simulate ``num`` charged n-body trajectories (float64) and return input and target frames.

    Parameters
    ----------
    num : int
        Number of trajectories, ``>= 1`` (0 is refused: ``ValueError``). Sizes are checked against
        the memory available before anything is allocated (``ValueError`` naming ``num`` or
        ``n_particles`` with the memory needed).
    seed : int
        Seed of the torch generator; the same seed gives the same data.
    n_particles : int
        Particles per system (5 in the protocol).
    frame_in, frame_out : int
        Saved frames used as input and target (frame k = state after ``sample_freq * (k + 1)``
        steps); ``frame_out > frame_in``.
    sample_freq : int
        Integration steps between saved frames.
    dt, loc_std, vel_norm, interaction_strength, box_size : float
        Time step, initial position std, initial speed, Coulomb constant, initial reflection box.
    device : str or torch.device

    Returns
    -------
    dict
        ``loc`` (num, n, 3) and ``vel`` (num, n, 3) at ``frame_in``, ``charges`` (num, n, 1) in
        {−1, +1}, ``target`` (num, n, 3) positions at ``frame_out``; all float64.

    Examples
    --------
    >>> d = generate_nbody(4, seed=0, frame_in=1, frame_out=2, sample_freq=10)
    >>> d["loc"].shape, d["charges"].abs().unique().tolist()
    (torch.Size([4, 5, 3]), [1.0])
    >>> bool(torch.equal(d["target"], generate_nbody(4, seed=0, frame_in=1, frame_out=2, sample_freq=10)["target"]))
    True
    """
    num = check_positive_int("num", num)
    n_particles = check_int("n_particles", n_particles, min=2)
    sample_freq = check_positive_int("sample_freq", sample_freq)
    frame_in = check_int("frame_in", frame_in, min=0)
    frame_out = check_int("frame_out", frame_out, min=frame_in + 1)
    check_int("seed", seed)
    dt = check_number("dt", dt, positive=True)
    loc_std = check_number("loc_std", loc_std, positive=True)
    vel_norm = check_number("vel_norm", vel_norm, positive=True)
    strength = check_number("interaction_strength", interaction_strength, positive=True)
    box = check_number("box_size", box_size, positive=True)
    _check_nbody_memory("num", num, num, n_particles, torch.device(device))
    max_force = 0.1 / dt

    f64 = torch.float64
    g = torch.Generator().manual_seed(seed)
    charges = torch.where(torch.rand(num, n_particles, 1, generator=g) < 0.5, -1.0, 1.0).to(f64)
    x = torch.randn(num, n_particles, 3, generator=g, dtype=f64) * loc_std
    v = torch.randn(num, n_particles, 3, generator=g, dtype=f64)
    v = v * (vel_norm / v.norm(dim=-1, keepdim=True))
    # one reflection at the walls of the initial box (the reference does this only at t = 0)
    over, under = x > box, x < -box
    x = torch.where(over, 2 * box - x, torch.where(under, -2 * box - x, x))
    v = torch.where(over, -v.abs(), torch.where(under, v.abs(), v))
    charges = charges.to(device)
    pi, pj, inc = _pair_incidence(n_particles, f64, charges.device)
    qq_pair = charges[:, pi, 0] * charges[:, pj, 0]
    x = x.to(device).permute(2, 0, 1).contiguous()  # (3, num, n): coordinate-major for speed
    v = v.to(device).permute(2, 0, 1).contiguous()

    step_in, step_out = sample_freq * (frame_in + 1), sample_freq * (frame_out + 1)
    v.add_(_forces(x, qq_pair, inc, strength, max_force), alpha=dt)  # half kick starts the leapfrog
    loc_in = vel_in = x
    for i in range(1, step_out + 1):
        x = x + dt * v
        if i == step_in:
            loc_in, vel_in = x, v.clone()
        if i == step_out:
            break
        v.add_(_forces(x, qq_pair, inc, strength, max_force), alpha=dt)
    back = lambda t: t.permute(1, 2, 0).contiguous()  # noqa: E731
    return {"loc": back(loc_in), "vel": back(vel_in), "charges": charges, "target": back(x)}


def _cache_path(root: Path, seed: int, sizes: tuple[int, int, int], settings: dict) -> Path:
    tag = "_".join(f"{k}{v}" for k, v in sorted(settings.items()))
    return root / "nbody" / f"charged5_seed{seed}_n{sizes[0]}-{sizes[1]}-{sizes[2]}_{tag}.pt"


def _cache_problem(data, n: int, n_particles: int) -> str | None:
    """Why ``data`` is not a valid cache of ``n`` trajectories of ``n_particles``, or None."""
    expected = {"loc": 3, "vel": 3, "charges": 1, "target": 3}
    if not isinstance(data, dict) or set(data) != set(expected):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        return f"expected a dict with the keys {sorted(expected)}, got {keys}"
    for k, last in expected.items():
        t, shape = data[k], (n, n_particles, last)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != torch.float64:
            return (f"{k!r} expected float64 of shape {shape}, got "
                    f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if not bool(torch.isfinite(t).all()):
            return f"{k!r} holds non-finite values"
    if not bool(data["charges"].abs().eq(1).all()):
        return "charges expected in {-1, +1}"
    return None


def _read_cache(path: Path, n: int, n_particles: int = 5):
    """``(data, None)`` for a valid cache file at ``path``, else ``(None, why)`` (``weights_only``)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, garbage, or holding objects weights_only refuses
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return None, f"does not load (truncated or damaged: {type(exc).__name__}: {msg})"
    problem = _cache_problem(data, n, n_particles)
    return (None, problem) if problem is not None else (data, None)


def load_splits(root=None, seed: int = 0, sizes: tuple[int, int, int] = (3000, 2000, 2000),
                **settings) -> dict[str, dict[str, torch.Tensor]]:
    """Generate (or read from the cache) the train/val/test splits; float64 tensors.

    The three splits come from one simulation of ``sum(sizes)`` trajectories (train first); each
    size is ``>= 1`` and their sum is checked against the memory available (``ValueError`` naming
    ``sizes``) before anything is generated or read.
    A cache file is validated, not trusted: one that does not load (truncated, garbage) or holds
    the wrong keys, shapes, dtypes or non-finite values is regenerated with a ``RuntimeWarning``
    naming the file (the data is a pure function of the cache key, so nothing is lost).
    """
    from geodl.data._root import resolve_root

    sizes = tuple(check_positive_int(f"sizes[{i}] ({n})", s) for i, (n, s) in enumerate(zip(("n_train", "n_val", "n_test"), sizes)))
    n_particles = settings.get("n_particles", 5)
    if isinstance(n_particles, int) and not isinstance(n_particles, bool) and n_particles >= 2:
        _check_nbody_memory("sizes", sizes, sum(sizes), n_particles, settings.get("device", "cpu"))
    root = resolve_root(root)
    path = _cache_path(root, seed, sizes, settings)
    data = None
    if path.exists():
        n_particles = settings.get("n_particles", 5)
        data, problem = _read_cache(path, sum(sizes), n_particles)
        if problem is not None:  # a damaged cache file is regenerated (it is a pure function of its key)
            warnings.warn(f"{path}: {problem}; regenerating it (to rebuild it by hand, delete it "
                          f"or run `geodl data generate nbody`)", RuntimeWarning, stacklevel=3)
            data = None
    if data is None:
        data = generate_nbody(sum(sizes), seed=seed, **settings)
        atomic_torch_save(data, path)
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    return {name: {k: t[bounds[i]:bounds[i + 1]] for k, t in data.items()}
            for name, i in SPLITS.items()}


class NBodyDataset(Dataset):
    """One split of the charged n-body data (generated on first use, then cached).

    Each item is ``(loc, vel, charges, target)`` with shapes (5, 3), (5, 3), (5, 1), (5, 3); the
    default collate stacks them to (B, 5, ·).

    Parameters
    ----------
    split : {"train", "val", "test"}
    root : str or pathlib.Path, optional
        Data root (default :func:`geodl.data.default_root`); the cache lives in ``root/nbody``.
    seed : int
        Generator seed.
    sizes : tuple of int
        (train, val, test) trajectory counts, default (3000, 2000, 2000); each ``>= 1`` (an empty
        split is refused with ``ValueError``, as is a total that would not fit in memory).
    max_samples : int, optional
        Keep only the first ``max_samples`` (``>= 1``) trajectories of the split.
    dtype : torch.dtype
        Dtype of the returned tensors (float32 by default; the simulation runs in float64).
    **settings
        Passed to :func:`generate_nbody` (e.g. ``sample_freq``, ``frame_in``); part of the cache key.

    Examples
    --------
    >>> import tempfile
    >>> ds = NBodyDataset("val", root=tempfile.mkdtemp(), sizes=(4, 3, 2), sample_freq=5)
    >>> len(ds), [t.shape[-1] for t in ds[0]]
    (3, [3, 3, 1, 3])
    """

    def __init__(self, split: str = "train", root=None, *, seed: int = 0,
                 sizes: tuple[int, int, int] = (3000, 2000, 2000), max_samples: int | None = None,
                 dtype: torch.dtype = torch.float32, **settings):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        if not (isinstance(sizes, (tuple, list)) and len(sizes) == 3):
            raise ValueError(f"sizes: expected (n_train, n_val, n_test), got {sizes!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        if max_samples is not None:
            check_positive_int("max_samples", max_samples)  # before anything is generated
        data = load_splits(root, seed, tuple(sizes), **settings)[split]
        if max_samples is not None:
            data = {k: t[:max_samples] for k, t in data.items()}
        self.split = split
        self.loc, self.vel, self.charges, self.target = (
            data[k].to(dtype) for k in ("loc", "vel", "charges", "target"))

    def __len__(self) -> int:
        return self.loc.shape[0]

    def __getitem__(self, i):
        return self.loc[i], self.vel[i], self.charges[i], self.target[i]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """All items stacked: ``(loc, vel, charges, target)``."""
        return self.loc, self.vel, self.charges, self.target
