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
(as in the reference). By default the initial states come from a seeded torch generator, so the
trajectories are statistically like the reference's, not the same ones. With
``reference_streams=True`` (:func:`generate_nbody`, :func:`load_splits`, :class:`NBodyDataset`)
they are the reference's own: :func:`reference_initial_states` replays the reference's numpy
stream (``numpy.random.RandomState(43)``; per trajectory the charges, positions and velocities
in its call order, then the draws of its zero-variance noise; 10,000 train, 2,000 validation and
2,000 test trajectories of 5,000 steps, generated in that order, of which the splits keep the
first 3,000 / 2,000 / 2,000), so the initial charges, positions and velocities equal the
reference's bit for bit; the saved frames, integrated here, agree with the reference's to float64
round-off amplified by the dynamics (most below 1e-12; 4e-6 at most at frame 40 in the first
20 trajectories), not bitwise. Integration runs in float64, vectorised over
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

__all__ = ["NBodyDataset", "generate_nbody", "reference_initial_states"]

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


# The reference's "nbody_small" run (n_body_system/dataset/generate_dataset.py --num-train 10000
# --seed 43 --sufix small): one numpy RandomState walks 10,000 train, then 2,000 validation, then
# 2,000 test trajectories of 5,000 steps each.
REFERENCE_SEED = 43
REFERENCE_COUNTS = (10000, 2000, 2000)
REFERENCE_LENGTH = 5000


def _check_reference_length(length, sample_freq: int, frame_out: int) -> int:
    """The reference's trajectory length ``T`` (it fixes how many normals each trajectory uses)."""
    length = check_positive_int("reference_length", length)
    if length % sample_freq:
        raise ValueError(f"reference_length: expected a multiple of sample_freq ({sample_freq}), got {length}")
    if (frame_out + 2) * sample_freq > length:
        raise ValueError(f"reference_length: a trajectory of {length} steps saves frames 0.."
                         f"{length // sample_freq - 2}; frame_out={frame_out} needs reference_length "
                         f">= {(frame_out + 2) * sample_freq}")
    return length


def _reference_states(seed: int, ranges, *, n_particles: int, length: int, sample_freq: int,
                      loc_std: float, vel_norm: float, box_size: float):
    """Initial states of the trajectories ``ranges = [(start, num), ...]`` of the reference stream.

    Walks one ``numpy.random.RandomState(seed)`` through trajectories ``0 .. max(start + num) - 1``
    in order, making per trajectory the draws of the reference's
    ``ChargedParticlesSim.sample_trajectory`` (``n_body_system/dataset/synthetic_sim.py``):
    ``n`` uniforms for the charges (``np.random.choice([-1, 0, 1], p=[1/2, 0, 1/2])`` maps a uniform
    ``u`` to ``-1 if u < 1/2 else +1``), ``3 n`` normals for the positions and ``3 n`` for the
    velocities (each a coordinate-major (3, n) array), then the ``2 · T_save · 3 n`` normals of the
    zero-variance observation noise (``T_save = length / sample_freq - 1``), drawn and dropped.
    Returns float64 numpy arrays charges (N, n, 1), loc (N, n, 3), vel (N, n, 3), the ranges
    concatenated in the order given.
    """
    import numpy as np

    n = n_particles
    n_noise = 2 * (length // sample_freq - 1) * 3 * n
    std = loc_std * (float(n) / 5.0) ** (1 / 3)  # the reference scales the std with n (1 for 5)
    wanted = [k for start, num in ranges for k in range(start, start + num)]
    slot = {k: j for j, k in enumerate(sorted(set(wanted)))}
    u_all = np.empty((len(slot), n))
    z_all = np.empty((len(slot), 6 * n))
    rs = np.random.RandomState(seed)
    for k in range(max(wanted) + 1):
        u = rs.random_sample(n)
        z = rs.standard_normal(6 * n)
        rs.standard_normal(n_noise)  # the observation noise, multiplied by 0 in the reference
        if k in slot:
            u_all[slot[k]], z_all[slot[k]] = u, z
    pick = [slot[k] for k in wanted]
    u_all, z_all = u_all[pick], z_all[pick]
    q = np.where(u_all < 0.5, -1.0, 1.0)[:, :, None]
    x = z_all[:, :3 * n].reshape(-1, 3, n).transpose(0, 2, 1) * std
    v = z_all[:, 3 * n:].reshape(-1, 3, n).transpose(0, 2, 1)
    # |v| summed over the coordinates in the reference's order, then (v * vel_norm) / |v|
    norm = np.sqrt((v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2])
    v = (v * vel_norm) / norm[..., None]
    # one reflection at the box walls, like the reference's _clamp at t = 0 ("over" first, then
    # "under" on the reflected positions)
    over = x > box_size
    x[over] = 2 * box_size - x[over]
    v[over] = -np.abs(v[over])
    under = x < -box_size
    x[under] = -2 * box_size - x[under]
    v[under] = np.abs(v[under])
    return q, np.ascontiguousarray(x), np.ascontiguousarray(v)


_MAX_REFERENCE_DRAWS = 2_000_000_000


def reference_initial_states(num: int, *, seed: int = REFERENCE_SEED, start: int = 0,
                             n_particles: int = 5, length: int = REFERENCE_LENGTH,
                             sample_freq: int = 100, loc_std: float = 1.0, vel_norm: float = 0.5,
                             box_size: float = 5.0) -> dict[str, torch.Tensor]:
    """Initial states of trajectories ``start .. start + num - 1`` of the EGNN reference's stream.

    The reference (``n_body_system/dataset/generate_dataset.py`` of the EGNN repository) seeds
    numpy's legacy global generator once and simulates its trajectories one after the other, each
    drawing, in this order: the charges (``n`` uniforms), the positions and the velocities
    (``3 n`` normals each, coordinate-major) and, because its observation noise is drawn even at
    variance 0, ``2 · (length / sample_freq − 1) · 3 n`` further normals. This function replays that
    stream with ``numpy.random.RandomState(seed)``, so for trajectory ``k`` of the stream (train
    first, e.g. validation trajectory ``i`` of "nbody_small" is ``k = 10000 + i``) the charges,
    positions (after the one reflection at the box) and velocities equal the reference's bit for bit.

    Parameters
    ----------
    num : int
        Number of trajectories, ``>= 1``.
    seed : int
        Seed of the numpy ``RandomState`` (43 in the reference's "nbody_small" run).
    start : int
        Index in the stream of the first trajectory returned, ``>= 0``; the ``start`` trajectories
        before it are drawn and dropped (about 30 µs each).
    n_particles, length, sample_freq : int
        Particles per system, the reference's trajectory length ``T`` in steps (5,000) and its
        saving interval (100); the last two only fix how many normals each trajectory consumes.
    loc_std, vel_norm, box_size : float
        As in :func:`generate_nbody`; like the reference, the position std is
        ``loc_std · (n_particles / 5) ** (1/3)``.

    Returns
    -------
    dict
        ``charges`` (num, n, 1) in {−1, +1}, ``loc`` (num, n, 3), ``vel`` (num, n, 3); float64, CPU.

    Examples
    --------
    >>> s = reference_initial_states(2)
    >>> s["loc"].shape, s["charges"].abs().unique().tolist()
    (torch.Size([2, 5, 3]), [1.0])
    >>> bool(torch.equal(s["vel"][1], reference_initial_states(1, start=1)["vel"][0]))
    True
    """
    num = check_positive_int("num", num)
    start = check_int("start", start, min=0)
    seed = check_int("seed", seed, min=0, max=2**32 - 1)
    n_particles = check_int("n_particles", n_particles, min=2)
    sample_freq = check_positive_int("sample_freq", sample_freq)
    length = check_positive_int("length", length)
    if length % sample_freq or length < 2 * sample_freq:
        raise ValueError(f"length: expected a multiple (>= 2) of sample_freq ({sample_freq}), got {length}")
    # sizes before drawing: the returned states, then the stream's length (every trajectory before and
    # among those returned draws n (7 + 6 (T - 1)) numbers, T = length / sample_freq saved frames)
    check_memory("n_particles", n_particles, 7 * 8 * n_particles, "cpu", what=f"one system of {n_particles} particles")
    check_memory("num", num, 7 * 8 * n_particles * num, "cpu", what=f"{num} initial states of {n_particles} particles")
    frames = length // sample_freq
    draws = (start + num) * n_particles * (7 + 6 * (frames - 1))
    if draws > _MAX_REFERENCE_DRAWS:
        arg = "length" if frames > 1000 else ("start" if start >= num else "num")
        raise ValueError(f"{arg}: replaying trajectories 0 .. {start + num - 1} of the stream with length={length} "
                         f"draws {draws:.3g} numbers (at most {_MAX_REFERENCE_DRAWS:.0e}: minutes of work); "
                         "the reference's stream has 14,000 trajectories of length 5,000")
    q, x, v = _reference_states(
        seed, [(start, num)], n_particles=n_particles, length=length, sample_freq=sample_freq,
        loc_std=check_number("loc_std", loc_std, positive=True),
        vel_norm=check_number("vel_norm", vel_norm, positive=True),
        box_size=check_number("box_size", box_size, positive=True))
    return {"charges": torch.from_numpy(q), "loc": torch.from_numpy(x), "vel": torch.from_numpy(v)}


def _simulate(charges: torch.Tensor, x: torch.Tensor, v: torch.Tensor, *, frame_in: int,
              frame_out: int, sample_freq: int, dt: float, strength: float,
              device) -> dict[str, torch.Tensor]:
    """Leapfrog from the initial states (T, n, ·) to the saved frames ``frame_in`` and ``frame_out``."""
    f64 = torch.float64
    max_force = 0.1 / dt
    n_particles = x.shape[1]
    charges = charges.to(device=device, dtype=f64)
    pi, pj, inc = _pair_incidence(n_particles, f64, charges.device)
    qq_pair = charges[:, pi, 0] * charges[:, pj, 0]
    x = x.to(device=device, dtype=f64).permute(2, 0, 1).contiguous()  # (3, num, n): coordinate-major
    v = v.to(device=device, dtype=f64).permute(2, 0, 1).contiguous()

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


def generate_nbody(num: int, *, seed: int = 0, n_particles: int = 5, frame_in: int = 30,
                   frame_out: int = 40, sample_freq: int = 100, dt: float = 0.001,
                   loc_std: float = 1.0, vel_norm: float = 0.5, interaction_strength: float = 1.0,
                   box_size: float = 5.0, device="cpu", reference_streams: bool = False,
                   reference_seed: int = REFERENCE_SEED, reference_start: int = 0,
                   reference_length: int = REFERENCE_LENGTH) -> dict[str, torch.Tensor]:
    """Simulate ``num`` charged n-body trajectories (float64) and return input and target frames.

    Parameters
    ----------
    num : int
        Number of trajectories, ``>= 1`` (0 is refused: ``ValueError``). Sizes are checked against
        the memory available before anything is allocated (``ValueError`` naming ``num`` or
        ``n_particles`` with the memory needed).
    seed : int
        Seed of the torch generator; the same seed gives the same data. Not used when
        ``reference_streams`` is True (the numpy seed is then ``reference_seed``).
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
    reference_streams : bool
        Draw the initial states from the EGNN reference's numpy stream instead of torch's (see
        :func:`reference_initial_states`): trajectories ``reference_start .. reference_start +
        num - 1`` of ``numpy.random.RandomState(reference_seed)`` with trajectories of
        ``reference_length`` steps. The initial charges, positions and velocities then equal the
        reference's bit for bit; the integration is this module's vectorised float64 leapfrog,
        the same steps as the reference's in a different floating-point order (pair differences
        instead of its ``|a|² + |b|² − 2 a·b`` through a BLAS matrix product, whose rounding
        depends on the BLAS build anyway), so the saved frames agree with the reference's to
        float64 round-off amplified by the chaotic dynamics, not bitwise: at frame 40 most of the
        first 20 "nbody_small" trajectories agree to 1e-12, the worst (a close encounter) to
        4e-6. The position std is ``loc_std · (n_particles / 5) ** (1/3)`` as in the reference.
    reference_seed, reference_start, reference_length : int
        Used only with ``reference_streams``: the numpy seed (43, "nbody_small"), the index of the
        first trajectory in the stream, and the reference's trajectory length ``T`` (5,000; a
        multiple of ``sample_freq`` with ``(frame_out + 2) * sample_freq <= T``), which sets how
        many normals each trajectory consumes.

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
    if not isinstance(reference_streams, bool):
        raise TypeError(f"reference_streams: expected a bool, got {reference_streams!r}")
    if reference_streams:
        reference_seed = check_int("reference_seed", reference_seed, min=0, max=2**32 - 1)
        reference_start = check_int("reference_start", reference_start, min=0)
        reference_length = _check_reference_length(reference_length, sample_freq, frame_out)
    _check_nbody_memory("num", num, num, n_particles, torch.device(device))

    if reference_streams:
        q, x, v = (torch.from_numpy(a) for a in _reference_states(
            reference_seed, [(reference_start, num)], n_particles=n_particles,
            length=reference_length, sample_freq=sample_freq, loc_std=loc_std, vel_norm=vel_norm,
            box_size=box))
    else:
        q, x, v = _torch_states(num, seed, n_particles, loc_std, vel_norm, box)
    return _simulate(q, x, v, frame_in=frame_in, frame_out=frame_out, sample_freq=sample_freq,
                     dt=dt, strength=strength, device=device)


def _torch_states(num: int, seed: int, n_particles: int, loc_std: float, vel_norm: float,
                  box: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """geodl's own initial states: charges, positions, velocities from a seeded torch generator."""
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
    return charges, x, v


def _cache_path(root: Path, seed: int, sizes: tuple[int, int, int], settings: dict,
                reference: tuple | None = None) -> Path:
    """The cache file of one setting; ``reference = (seed, counts, length)`` for the numpy streams."""
    tag = "_".join(f"{k}{v}" for k, v in sorted(settings.items()))
    if reference is not None:
        rseed, counts, length = reference
        source = f"refnumpy{rseed}-{counts[0]}-{counts[1]}-{counts[2]}-T{length}"
    else:
        source = f"seed{seed}"
    return root / "nbody" / f"charged5_{source}_n{sizes[0]}-{sizes[1]}-{sizes[2]}_{tag}.pt"


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


def load_splits(root=None, seed: int = 0, sizes: tuple[int, int, int] = (3000, 2000, 2000), *,
                reference_streams: bool = False, reference_seed: int = REFERENCE_SEED,
                reference_counts: tuple[int, int, int] = REFERENCE_COUNTS,
                reference_length: int = REFERENCE_LENGTH,
                **settings) -> dict[str, dict[str, torch.Tensor]]:
    """Generate (or read from the cache) the train/val/test splits; float64 tensors.

    The three splits come from one simulation of ``sum(sizes)`` trajectories (train first); each
    size is ``>= 1`` and their sum is checked against the memory available (``ValueError`` naming
    ``sizes``) before anything is generated or read.
    With ``reference_streams=True`` the splits are those of the EGNN reference's run instead: its
    numpy stream (``numpy.random.RandomState(reference_seed)``, see
    :func:`reference_initial_states`) generates ``reference_counts`` = (10000, 2000, 2000)
    train, validation and test trajectories of ``reference_length`` steps in that order, and each
    split is the first ``sizes[i]`` trajectories of its part (the reference trains on the first
    3,000 of its 10,000), so ``sizes[i] <= reference_counts[i]`` (``ValueError`` otherwise) and
    ``seed`` is not used. The reference settings are part of the cache key.
    A cache file is validated, not trusted: one that does not load (truncated, garbage) or holds
    the wrong keys, shapes, dtypes or non-finite values is regenerated with a ``RuntimeWarning``
    naming the file (the data is a pure function of the cache key, so nothing is lost).
    """
    from geodl.data._root import resolve_root

    sizes = tuple(check_positive_int(f"sizes[{i}] ({n})", s) for i, (n, s) in enumerate(zip(("n_train", "n_val", "n_test"), sizes)))
    n_particles = settings.get("n_particles", 5)
    if isinstance(n_particles, int) and not isinstance(n_particles, bool) and n_particles >= 2:
        _check_nbody_memory("sizes", sizes, sum(sizes), n_particles, settings.get("device", "cpu"))
    if not isinstance(reference_streams, bool):
        raise TypeError(f"reference_streams: expected a bool, got {reference_streams!r}")
    if "reference_start" in settings:
        raise TypeError("reference_start: not a load_splits setting (each split starts where its "
                        "part of the reference stream starts; see reference_counts)")
    reference = None
    if reference_streams:
        if not (isinstance(reference_counts, (tuple, list)) and len(reference_counts) == 3):
            raise ValueError(f"reference_counts: expected (n_train, n_val, n_test), got {reference_counts!r}")
        counts = tuple(check_positive_int(f"reference_counts[{i}]", c) for i, c in enumerate(reference_counts))
        for name, size, count in zip(SPLITS, sizes, counts):
            if size > count:
                raise ValueError(f"sizes: the {name} split takes the first {size} of the reference's "
                                 f"{count} {name} trajectories (reference_counts={counts}); expected "
                                 f"at most {count}")
        reference_seed = check_int("reference_seed", reference_seed, min=0, max=2**32 - 1)
        reference_length = _check_reference_length(
            reference_length, settings.get("sample_freq", 100), settings.get("frame_out", 40))
        reference = (reference_seed, counts, reference_length)
    root = resolve_root(root)
    path = _cache_path(root, seed, sizes, settings, reference)
    data = None
    if path.exists():
        n_particles = settings.get("n_particles", 5)
        data, problem = _read_cache(path, sum(sizes), n_particles)
        if problem is not None:  # a damaged cache file is regenerated (it is a pure function of its key)
            warnings.warn(f"{path}: {problem}; regenerating it (to rebuild it by hand, delete it "
                          f"or run `geodl data generate nbody`)", RuntimeWarning, stacklevel=3)
            data = None
    if data is None:
        if reference is None:
            data = generate_nbody(sum(sizes), seed=seed, **settings)
        else:  # each split starts where its part of the reference's one stream starts
            starts = (0, counts[0], counts[0] + counts[1])
            parts = [generate_nbody(size, seed=seed, reference_streams=True, reference_seed=reference_seed,
                                    reference_start=start, reference_length=reference_length, **settings)
                     for size, start in zip(sizes, starts)]
            data = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
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
        Generator seed (not used with ``reference_streams``).
    sizes : tuple of int
        (train, val, test) trajectory counts, default (3000, 2000, 2000); each ``>= 1`` (an empty
        split is refused with ``ValueError``, as is a total that would not fit in memory).
    reference_streams : bool
        Use the EGNN reference's own trajectories ("nbody_small": ``numpy.random.RandomState(43)``,
        10,000 / 2,000 / 2,000 trajectories generated in that order, of which the first ``sizes``
        of each part are kept); initial states bit for bit, frames to float64 round-off. See
        :func:`load_splits`; ``reference_seed``, ``reference_counts`` and ``reference_length``
        may be passed too.
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
                 sizes: tuple[int, int, int] = (3000, 2000, 2000), reference_streams: bool = False,
                 max_samples: int | None = None, dtype: torch.dtype = torch.float32, **settings):
        if split not in SPLITS:
            raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        if not (isinstance(sizes, (tuple, list)) and len(sizes) == 3):
            raise ValueError(f"sizes: expected (n_train, n_val, n_test), got {sizes!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
        if max_samples is not None:
            check_positive_int("max_samples", max_samples)  # before anything is generated
        data = load_splits(root, seed, tuple(sizes), reference_streams=reference_streams, **settings)[split]
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
