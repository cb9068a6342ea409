"""random_inputs: shapes per kind, reproducibility, bad arguments."""

import pytest
import torch

from geodl.testing import random_inputs


def test_shapes_for_every_kind():
    kinds = ["scalar", "perm", "node:points", "vectors", "node:pseudovectors", "tensor2", "node:sh:2", "edge_index"]
    out = random_inputs(kinds, 6, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    assert [tuple(t.shape) for t in out] == [(6,), (6,), (6, 3), (6, 3), (6, 3), (6, 3, 3), (6, 9), (2, 12)]
    assert all(t.dtype == torch.float32 for t in out[:-1]) and out[-1].dtype == torch.long
    ei = out[-1]
    assert bool(((ei >= 0) & (ei < 6)).all()) and bool((ei[0] != ei[1]).all())
    assert random_inputs(["points"], 4, dim=2)[0].shape == (4, 2)
    assert random_inputs(["edge_index"], 1)[0].shape == (2, 0)


def test_shapes_for_the_registered_new_kinds():
    kinds = ["so3:2", "rotation", "equirect:4x8", "image2d", "node:2x0e+1x1o", "batch", "parts", "sh:1:e3nn"]
    out = random_inputs(kinds, 6, generator=torch.Generator().manual_seed(0))
    assert [tuple(t.shape) for t in out] == [(6, 35), (6, 3, 3), (6, 4, 8), (6, 8, 8), (6, 5), (6,), (6,), (6, 4)]
    R = out[1]
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(6, 3, 3), atol=1e-12)
    assert out[5].dtype == out[6].dtype == torch.int64 and out[5].tolist() == sorted(out[5].tolist())
    assert random_inputs(["rotation"], 3, dim=2)[0].shape == (3, 2, 2)


def test_same_generator_seed_same_inputs():
    a = random_inputs(["node:points", "edge_index"], 5, generator=torch.Generator().manual_seed(3))
    b = random_inputs(["node:points", "edge_index"], 5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("args, kwargs, exc, name", [
    (("node:points",), {}, TypeError, "kinds"),
    ((["node:quaternions"],), {}, ValueError, r"kinds\[0\]"),
    ((["points", 3],), {}, TypeError, r"kinds\[1\]"),
    ((["points"], 0), {}, ValueError, "n_points"),
    ((["points"],), {"dim": 4}, ValueError, "dim"),
    ((["points"],), {"dtype": torch.int32}, TypeError, "dtype"),
])
def test_bad_arguments(args, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        random_inputs(*args, **kwargs)
