"""Fuzz of the articulated multi-part shapes (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import math

import pytest

from ._harness import HUGE, REGISTRY, cases, check_entry, close, expect, finite, fuzz, st, values, with_cases

S = st()


@fuzz("geodl.data.ArticulatedShapes", "geodl.data.ARTICULATED_CLASSES", "geodl.data.PART_LABELS",
      "geodl.data.PART_OFFSETS", examples=20)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "num_points": S.integers(24, 60),
    "per_class": S.integers(1, 2), "seed": S.integers(0, 5), "noise": S.sampled_from([0.0, 0.01, 0.1]),
    "joint_range": S.sampled_from([None, (0.0, 0.5), [0.2, 1.0], (1.0, math.pi)]),
    "rotate": S.sampled_from(["so3", "z", "none"]), "min_part_points": S.integers(1, 4)}), {
    "split": values("training", "", 3, None),
    "num_points": values(5, 0, -1, True, 2.5, "8", None) + values(HUGE, names=("num_points", "per_class")),
    "per_class": values(0, -1, True, 1.5, "2") + values(HUGE, names=("num_points", "per_class")),
    "seed": values(-1, "0", 2.5, None),
    "noise": values(-0.01, float("nan"), float("inf"), "0.1"),
    "joint_range": values((1.0, 0.5), (0.5, 0.5), (-0.1, 1.0), (0.0, 4.0), 1.0, (1.0,), ("a", 1.0),
                          (float("nan"), 1.0), (0.0, float("inf"))),
    "rotate": values("SO3", "", None, 3),
    "min_part_points": values(0, -1, True, 1.5, "2") + values(HUGE, 11, names=("min_part_points", "num_points"))}))
def build_articulated_shapes(split, num_points, per_class, seed, noise, joint_range, rotate, min_part_points):
    import torch
    from geodl.data import ARTICULATED_CLASSES, PART_LABELS, PART_OFFSETS, ArticulatedShapes

    kw = dict(num_points=num_points, per_class=per_class, seed=seed, noise=noise, joint_range=joint_range,
              rotate=rotate, min_part_points=min_part_points)

    def call():
        return ArticulatedShapes(split, **kw)

    def verify(ds):
        k = len(ARTICULATED_CLASSES)
        expect(ds.classes == tuple(ARTICULATED_CLASSES) and 4 <= k <= 5, "classes")
        expect(len(PART_LABELS) == sum(len(p) for p in ARTICULATED_CLASSES.values()) and len(PART_OFFSETS) == k,
               "PART_LABELS / PART_OFFSETS")
        expect(len(ds) == per_class * k, f"len {len(ds)}")
        expect(ds.y.tolist() == [c for c in range(k) for _ in range(per_class)], "labels by class then index")
        item = ds[len(ds) - 1]
        expect(item.pos.shape == (num_points, 3) and item.pos.dtype == torch.float32, f"pos {tuple(item.pos.shape)}")
        expect(item.part.shape == (num_points,) and item.instance.shape == (num_points,), "part / instance")
        expect(item.centre.shape == (num_points, 3) and item.num_parts.shape == (1,), "centre / num_parts")
        finite(ds.pos, ds.centre)
        for m in range(len(ds)):
            c = int(ds.y[m])
            expect(set(ds.part[m].tolist()) == set(ds.class_part_labels[c]), "part labels of the class")
            counts = torch.bincount(ds.instance[m])
            expect(len(counts) == int(ds.num_parts[m]) and int(counts.min()) >= min_part_points,
                   f"points per instance {counts.tolist()}")
        a, b = (math.radians(30), math.radians(75)) if joint_range is None else joint_range
        lo, hi = (a, b) if split == "test" else (0.0, a)
        ang = ds.joint_angles[torch.isfinite(ds.joint_angles)].double().abs()
        expect(float(ang.min()) >= lo - 1e-6 and float(ang.max()) <= hi + 1e-6, "joint angles outside the split's range")
        # centred objects of radius about 1, translated by N(0, 0.5^2) (6 sigma), noise tails
        expect(float(ds.pos.norm(dim=-1).max()) < 2.0 + 6 * 0.5 * math.sqrt(3) + 6 * noise, "points far out")
        again = ArticulatedShapes(split, **kw)
        close(again.pos, ds.pos, atol=0, rtol=0, msg="same seed, same points")
        other = ArticulatedShapes({"train": "test", "val": "train", "test": "val"}[split], **kw)
        expect(not torch.equal(other.pos, ds.pos), "another split gave the same points")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_articulated"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
