"""Fuzz of the synthetic shapes and the shapes/modelnet bench tasks (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, cases, check_entry, close, expect, finite, fuzz, st, values, with_cases

S = st()


@fuzz("geodl.data.SyntheticShapes", "geodl.data.SHAPE_CLASSES", examples=30)
@with_cases(lambda: cases(S.fixed_dictionaries({
    "split": S.sampled_from(["train", "val", "test"]), "num_points": S.integers(3, 40), "per_class": S.integers(1, 2),
    "normals": S.booleans(), "seed": S.integers(0, 5), "deform": S.sampled_from([0.0, 0.25, 1.0]),
    "noise": S.sampled_from([0.0, 0.01, 0.1])}), {
    "split": values("training", "", 3, None),
    "num_points": values(2, 0, -1, True, 2.5, "8", None) + values(HUGE, names=("num_points", "per_class")),
    "per_class": values(0, -1, True, 1.5, "2") + values(HUGE, names=("num_points", "per_class")),
    "normals": values(1, "yes", None), "seed": values(-1, "0", 2.5, None),
    "deform": values(-0.1, 1.5, float("nan"), float("inf"), "0.1"),
    "noise": values(-0.01, float("nan"), float("inf"), "0.1")}))
def build_synthetic_shapes(split, num_points, per_class, normals, seed, deform, noise):
    import torch
    from geodl.data import SHAPE_CLASSES, SyntheticShapes

    kw = dict(num_points=num_points, per_class=per_class, normals=normals, seed=seed, deform=deform, noise=noise)

    def call():
        return SyntheticShapes(split, **kw)

    def verify(ds):
        k = len(SHAPE_CLASSES)
        expect(ds.classes == SHAPE_CLASSES and len(SHAPE_CLASSES) >= 10, "classes")
        expect(len(ds) == per_class * k, f"len {len(ds)} for per_class={per_class}")
        expect(ds.y.tolist() == [c for c in range(k) for _ in range(per_class)], "labels by class then index")
        item = ds[len(ds) - 1]
        expect(item.pos.shape == (num_points, 3) and item.pos.dtype == torch.float32, f"pos {tuple(item.pos.shape)}")
        expect(item.y.shape == (1,) and int(item.y) == k - 1, f"y {item.y}")
        finite(ds.pos)
        # the solids are about 2 units wide; deformation up to e^1, noise up to 0.1 (N(0, 0.1) tails: < 1)
        expect(float(ds.pos.abs().max()) < 4.0, f"points far out: {float(ds.pos.abs().max())}")
        if normals:
            expect(item.normal.shape == (num_points, 3), "normal shape")
            close(ds.normal.norm(dim=-1), torch.ones(len(ds), num_points), atol=1e-5, msg="unit normals")
        else:
            expect(ds.normal is None and getattr(item, "normal", None) is None, "normals without normals=True")
        again = SyntheticShapes(split, **kw)
        close(again.pos, ds.pos, atol=0, rtol=0, msg="same seed, same points")
        other = SyntheticShapes({"train": "test", "val": "train", "test": "val"}[split], **kw)
        expect(not torch.equal(other.pos, ds.pos), "another split gave the same points")

    return call, verify


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_shapes"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
