"""Fuzz of the category-level pose data and the symmetric rotation error (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases

S = st()
CATS = ("bottle", "bowl", "camera", "can", "laptop", "mug")
SYMS = ("none", "z", "tetrahedral", "octahedral", "icosahedral")


@fuzz("geodl.data.CategoryPoses", "geodl.data.POSE_CATEGORIES", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "num_points": S.integers(3, 40),
    "per_category": S.integers(1, 2),
    "categories": S.one_of(S.none(), S.lists(S.sampled_from(CATS), min_size=1, max_size=3, unique=True)),
    "colored": S.booleans(), "seed": S.integers(0, 5), "noise": S.sampled_from([0.0, 0.01, 0.1]),
    "scale": S.sampled_from([(0.5, 1.5), (1.0, 1.0), [0.2, 0.3]])}), {
    "split": values("training", "", 3, None),
    "num_points": values(2, 0, -1, True, 2.5, "8", None) + values(HUGE, names=("num_points", "per_category")),
    "per_category": values(0, -1, True, 1.5, "2") + values(HUGE, names=("num_points", "per_category")),
    "categories": values(["cup"], [], "mug", [3], ["mug", "mug"], 5, ("can", None)),
    "colored": values(1, "yes", None), "seed": values(-1, "0", 2.5, None),
    "noise": values(-0.01, float("nan"), float("inf"), "0.1"),
    "scale": values((1.0, 0.5), (0.0, 1.0), (-1.0, 1.0), 1.0, (1.0,), ("a", 1.0), (float("nan"), 1.0), None)}))
def build_category_poses(split, num_points, per_category, categories, colored, seed, noise, scale):
    import torch
    from geodl.data import POSE_CATEGORIES, CategoryPoses

    kw = dict(num_points=num_points, per_category=per_category, categories=categories, colored=colored, seed=seed,
              noise=noise, scale=scale)

    def call():
        return CategoryPoses(split, **kw)

    def verify(ds):
        names = tuple(POSE_CATEGORIES) if categories is None else tuple(categories)
        k = len(names)
        expect(tuple(POSE_CATEGORIES) == CATS and set(POSE_CATEGORIES.values()) <= set(SYMS), "POSE_CATEGORIES")
        expect(ds.categories == names, f"categories {ds.categories}")
        expect(ds.symmetries == tuple(POSE_CATEGORIES[c] for c in names), f"symmetries {ds.symmetries}")
        expect(len(ds) == per_category * k, f"len {len(ds)}")
        expect(ds.y.tolist() == [c for c in range(k) for _ in range(per_category)], "labels by category then index")
        item = ds[len(ds) - 1]
        expect(item.pos.shape == (num_points, 3) and item.pos.dtype == torch.float32, f"pos {tuple(item.pos.shape)}")
        expect(item.rotation.shape == (1, 3, 3) and item.y.shape == (1,) and int(item.y) == k - 1, "rotation / y")
        finite(ds.pos, ds.rotation)
        R = ds.rotation.double()
        close(R @ R.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(R), atol=1e-5, msg="orthogonal")
        close(torch.linalg.det(R), torch.ones(len(R), dtype=torch.float64), atol=1e-5, msg="det +1")
        # unit radius of the full object, plus the noise relative to the smallest object radius
        bound = 1.0 + 1e-5 + 8 * noise / min(scale)
        expect(float(ds.pos.norm(dim=-1).max()) <= bound, f"points far out: {float(ds.pos.norm(dim=-1).max())}")
        if colored:
            expect(item.color.shape == (num_points, 3), "color shape")
            expect(float(ds.color.min()) >= 0 and float(ds.color.max()) <= 1, "colour outside [0, 1]")
        else:
            expect(ds.color is None and getattr(item, "color", None) is None, "color without colored=True")
        again = CategoryPoses(split, **kw)
        close(again.pos, ds.pos, atol=0, rtol=0, msg="same seed, same points")
        close(again.rotation, ds.rotation, atol=0, rtol=0, msg="same seed, same rotations")
        other = CategoryPoses({"train": "test", "val": "train", "test": "val"}[split], **kw)
        expect(not torch.equal(other.rotation, ds.rotation), "another split gave the same rotations")

    return call, verify


def _rotations(shape, seed, dtype):
    import torch
    from geodl.groups import random_rotation

    return random_rotation(*shape, generator=torch.Generator().manual_seed(seed), dtype=getattr(torch, dtype))


def _pair(shape_p, shape_g, seed, dtype, near):
    import torch
    from geodl.groups import axis_angle_to_matrix

    R_gt = _rotations(shape_g, seed, dtype)
    if near:  # R_pred a small rotation away from R_gt (near 0) or from R_gt Rx(pi) (near 180)
        v = torch.zeros(3, dtype=R_gt.dtype)
        v[seed % 3] = [1e-7, 3.14159265, 1e-3][seed % 3]
        R_pred = R_gt @ axis_angle_to_matrix(v)
    else:
        R_pred = _rotations(shape_p, seed + 1, dtype)
    return dict(R_pred=R_pred, R_gt=R_gt)


_BATCHES = S.sampled_from([((), ()), ((0,), (0,)), ((1,), (4,)), ((4,), (4,)), ((2, 3), (3,)), ((), (5,))])


@fuzz("geodl.data.symmetric_rotation_error", examples=50)
@with_cases(lambda: cases(S.builds(lambda b, seed, dt, near, sym: {**_pair(*b, seed, dt, near), "symmetry": sym},
                                   _BATCHES, S.integers(0, 2**31 - 1), S.sampled_from(["float64", "float32"]),
                                   S.booleans(), S.sampled_from(SYMS)), {
    "R_pred": tensor_muts("R_pred", shapes={"(..., 3, 4)": lambda x: x.new_zeros(x.shape[:-1] + (4,)),
                                            "(3,)": lambda x: x.new_zeros(3)}),
    "R_gt": tensor_muts("R_gt", shapes={"(..., 4, 3)": lambda x: x.new_zeros(x.shape[:-2] + (4, 3))})
    + [Mut("batch (7,): not broadcastable with R_pred", lambda kw: _rotations((7,), 0, "float64"), mode="maybe",
           names=("R_pred", "R_gt"))],
    "symmetry": values("y", "", "Z", "octahedron", None, 3, ("z",))}))
def build_symmetric_rotation_error(R_pred, R_gt, symmetry):
    import math

    import torch
    from scipy.spatial.transform import Rotation

    from geodl.data import symmetric_rotation_error
    from geodl.groups import euler_to_matrix, finite_group

    def call():
        return symmetric_rotation_error(R_pred, R_gt, symmetry)

    def angle(A):  # degrees, scipy's magnitude of A (..., 3, 3) float64
        flat = A.reshape(-1, 3, 3)
        if not len(flat):
            return A.new_zeros(A.shape[:-2])
        return torch.as_tensor(Rotation.from_matrix(flat.numpy()).magnitude()).reshape(A.shape[:-2]) * 180 / math.pi

    def verify(e):
        a, b = torch.broadcast_tensors(R_pred.double(), R_gt.double())
        expect(e.shape == a.shape[:-2] and e.dtype == torch.promote_types(R_pred.dtype, R_gt.dtype), f"shape {e.shape}")
        finite(e)
        expect(bool(((e >= 0) & (e <= 180 + 1e-4)).all()), "error outside [0, 180]")
        f32 = R_pred.dtype == torch.float32 or R_gt.dtype == torch.float32
        if symmetry == "none":
            ref, atol = angle(a.transpose(-1, -2) @ b), (2e-2 if f32 else 1e-6)
        elif symmetry == "z":
            t = torch.linspace(0, 2 * math.pi, 1441, dtype=torch.float64)
            Rz = euler_to_matrix(torch.stack([t, 0 * t, 0 * t], -1))
            ref = angle(a.transpose(-1, -2).unsqueeze(-3) @ b.unsqueeze(-3) @ Rz).amin(-1) if a.numel() else a[..., 0, 0]
            atol = 0.15  # the grid of 1441 angles about z
            expect(bool((e.double() <= angle(a.transpose(-1, -2) @ b) + 1e-3).all()), "z error above the full error")
        else:
            G = finite_group(symmetry)
            ref = angle(a.transpose(-1, -2).unsqueeze(-3) @ b.unsqueeze(-3) @ G).amin(-1) if a.numel() else a[..., 0, 0]
            atol = 2e-2 if f32 else 1e-5
        close(e.double(), ref, atol=atol, rtol=0, msg=f"vs scipy ({symmetry})")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_categories"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
