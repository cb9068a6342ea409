"""HEALPix S² and SO(3) grids and nearest-grid lookup."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from geodl.groups import geodesic_distance, nearest_rotation, random_rotation, s2_healpix_grid, so3_healpix_grid

from ._helpers import F64, gen


@pytest.mark.parametrize("rec,size", [(0, 72), (1, 576), (2, 4_608), (3, 36_864)])
def test_so3_grid_size_rotations_and_distinct(rec, size):
    G = so3_healpix_grid(rec, dtype=F64)
    assert G.shape == (size, 3, 3) == (72 * 8**rec, 3, 3)
    assert float((G @ G.transpose(-1, -2) - torch.eye(3, dtype=F64)).abs().max()) < 1e-14
    assert float((torch.linalg.det(G) - 1).abs().max()) < 1e-14
    # all distinct: chordal distance to the nearest *other* grid element (k-d tree on the 9 entries),
    # converted to a geodesic angle via |R1 - R2|_F = 2√2 sin(θ/2)
    flat = G.reshape(size, 9).numpy()
    chord, _ = cKDTree(flat).query(flat, k=2)
    min_angle = 2 * np.arcsin(chord[:, 1].min() / (2 * math.sqrt(2)))
    assert min_angle > 0.1 / 2**rec, min_angle


def test_so3_grid_layout():
    rec = 1
    G = so3_healpix_grid(rec, dtype=F64)
    S = s2_healpix_grid(rec, dtype=F64)
    n_psi = 6 * 2**rec
    # R e_z is the pixel centre; consecutive ψ steps are rotations about that axis by 2π/n_psi
    assert torch.allclose(G[:, :, 2], S.repeat_interleave(n_psi, 0), atol=1e-15)
    step = geodesic_distance(G[0::n_psi], G[1::n_psi])
    assert torch.allclose(step, torch.full_like(step, 2 * math.pi / n_psi), atol=1e-14)


def test_s2_grid_is_healpix_nested():
    healpy = pytest.importorskip("healpy")
    for rec in (0, 2):
        x = s2_healpix_grid(rec, dtype=F64)
        assert x.shape == (12 * 4**rec, 3)
        ref = np.stack(healpy.pix2vec(2**rec, np.arange(12 * 4**rec), nest=True), axis=-1)
        assert np.abs(x.numpy() - ref).max() < 1e-15
    # nested: children 4p..4p+3 at rec+1 are closer to parent p than to other parents
    parent, child = s2_healpix_grid(1, dtype=F64), s2_healpix_grid(2, dtype=F64)
    assert torch.equal((child @ parent.T).argmax(dim=1), torch.arange(len(child)) // 4)


def test_grid_covers_so3_ever_finer():
    Q = random_rotation(10_000, generator=gen(0), dtype=F64)
    worst = []
    for rec in (0, 1, 2):
        G = so3_healpix_grid(rec, dtype=F64)
        worst.append(float(geodesic_distance(Q, G[nearest_rotation(Q, G)]).max()))
    assert worst[0] > worst[1] > worst[2]
    # halves with every level, roughly (measured 0.86, 0.45, 0.21 rad)
    assert worst[1] < 0.6 * worst[0] and worst[2] < 0.6 * worst[1] and worst[2] < 0.3


def test_nearest_rotation_is_the_geodesic_argmin_and_chunking_does_not_matter():
    G = so3_healpix_grid(1, dtype=F64)
    Q = random_rotation(4, 50, generator=gen(1), dtype=F64)
    brute = geodesic_distance(Q[..., None, :, :], G).argmin(dim=-1)
    for chunk in (None, 1, 7, 1000):
        idx = nearest_rotation(Q, G, chunk_size=chunk)
        assert idx.shape == (4, 50) and idx.dtype == torch.int64
        assert torch.equal(idx, brute)
    # grid points are their own nearest; float32 queries work against a float64 grid
    assert torch.equal(nearest_rotation(G, G), torch.arange(len(G)))
    assert torch.equal(nearest_rotation(Q.float(), G), brute)


def test_nearest_rotation_memory_is_chunk_times_grid():
    # Record every tensor produced inside the call; none may exceed chunk · G (apart from inputs
    # reshaped to (N, 9) / (9, G) and the output).
    from torch.overrides import TorchFunctionMode

    sizes = []

    class Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel())
            return out

    G = so3_healpix_grid(1, dtype=F64)
    Q = random_rotation(2000, generator=gen(2), dtype=F64)
    chunk = 16
    with Record():
        idx = nearest_rotation(Q, G, chunk_size=chunk)
    assert idx.shape == (2000,)
    bound = max(chunk * len(G), 9 * len(Q), 9 * len(G))
    assert max(sizes) <= bound < len(Q) * len(G)


@pytest.mark.parametrize(
    "call,exc,name",
    [
        (lambda: so3_healpix_grid(-1), ValueError, "rec"),
        (lambda: so3_healpix_grid(1.0), TypeError, "rec"),
        (lambda: s2_healpix_grid("2"), TypeError, "rec"),
        (lambda: nearest_rotation(torch.eye(3), torch.eye(3)), ValueError, "grid"),
        (lambda: nearest_rotation(torch.ones(3), so3_healpix_grid(0)), ValueError, "R"),
        (lambda: nearest_rotation(torch.full((3, 3), float("nan")), so3_healpix_grid(0)), ValueError, "R"),
        (lambda: nearest_rotation(torch.eye(3), so3_healpix_grid(0), chunk_size=0), ValueError, "chunk_size"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}:"):
        call()


def test_s2_healpix_lonlat_nested_matches_the_unit_vector_grid():
    from geodl.groups import lonlat_to_xyz, s2_healpix_grid, s2_healpix_lonlat

    xyz = s2_healpix_grid(2, dtype=torch.float64)
    assert torch.allclose(lonlat_to_xyz(s2_healpix_lonlat(4, nest=True)), xyz, atol=1e-12)
    ring = s2_healpix_lonlat(4)
    assert ring.shape == (192, 2) and not torch.equal(ring, s2_healpix_lonlat(4, nest=True))
    assert torch.allclose(torch.sort(lonlat_to_xyz(ring)[:, 2]).values, torch.sort(xyz[:, 2]).values, atol=1e-12)
    with pytest.raises(ValueError, match="nside"):
        s2_healpix_lonlat(3, nest=True)
    with pytest.raises(ValueError, match="nside"):
        s2_healpix_lonlat(0)
