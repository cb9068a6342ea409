"""The harness passes the correct examples and catches every deliberately broken one."""

import pytest
import torch

from geodl.groups import get_group
from geodl.testing import (
    EquivarianceReport,
    assert_equivariant,
    assert_invariant,
    default_rtol,
    equivariance_error,
)
from geodl.testing import examples as ex

POINTS = ("node:points",)


@pytest.fixture
def pos(geodl_generator):
    return torch.randn(12, 3, dtype=torch.float64, generator=geodl_generator)


def _failing_elements(report: EquivarianceReport) -> set:
    return {r.element for r in report.failures}


def test_invariant_example_passes_every_element(pos, geodl_dtype):
    report = assert_invariant(ex.invariant_model(), (pos.to(geodl_dtype),), POINTS, "E3+perm", generator=0)
    assert report.passed and report.dtype == str(geodl_dtype).replace("torch.", "")
    assert {r.element for r in report.rows} == {"identity", "rotation", "reflection", "translation", "perm", "haar"}
    assert report.max_error <= default_rtol(geodl_dtype)
    # 4 random elements, plus the rotation part of each (a "rotation" or "reflection" row)
    assert sum(r.n for r in report.rows) == len(get_group("E3+perm").structured(n_nodes=12)) + 4 + 4


def test_equivariant_example_passes(pos, geodl_dtype):
    report = assert_equivariant(ex.equivariant_model(), (pos.to(geodl_dtype),), POINTS, "node:vectors",
                                "E3+perm", generator=1)
    assert report.passed


def test_invariant_example_per_graph_with_a_batch_vector(pos):
    batch = torch.tensor([0] * 5 + [1] * 7)
    model = ex.invariant_model()
    report = assert_invariant(model, (pos, batch), ("node:points", "perm"), "E3+perm", generator=0)
    assert report.passed and model(pos, batch).shape == (2,)
    assert torch.allclose(model(pos, batch), torch.stack([model(pos[:5]), model(pos[5:])]))
    # mixing graphs up (the batch vector not permuted with the nodes) is caught
    assert not equivariance_error(model, (pos, batch), ("node:points", "scalar"), "scalar", "perm",
                                  generator=0).passed


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_with_a_looser_tolerance(pos, dtype):
    report = assert_equivariant(ex.equivariant_model(), (pos.to(dtype),), POINTS, "node:vectors", "E3+perm",
                                generator=1)
    assert report.dtype == str(dtype).replace("torch.", "") and 0 < report.max_error <= default_rtol(dtype)
    assert report.max_error > default_rtol(torch.float32)  # the input's own rounding shows


def test_equivariant_example_is_not_invariant(pos):
    # the same vectors declared invariant must fail: the harness really applies the output action
    report = equivariance_error(ex.equivariant_model(), (pos,), POINTS, "node:scalar", "SO3", generator=1)
    assert not report.passed and _failing_elements(report) == {"haar"}


def test_noninvariant_model_fails_rotations_and_translations_not_permutations(pos):
    report = equivariance_error(ex.noninvariant_model(), (pos,), POINTS, "scalar", "E3+perm", generator=2)
    assert not report.passed
    assert _failing_elements(report) == {"rotation", "reflection", "translation", "haar"}
    assert report.max_error > 1e-3
    with pytest.raises(AssertionError, match="FAIL"):
        assert_invariant(ex.noninvariant_model(), (pos,), POINTS, "E3+perm", generator=2)


def test_chiral_model_fails_reflections_only(pos):
    model = ex.chiral_model()
    assert equivariance_error(model, (pos,), POINTS, "scalar", "SE3+perm", generator=3).passed
    report = equivariance_error(model, (pos,), POINTS, "scalar", "O3", structured=True, n_samples=0)
    assert not report.passed and _failing_elements(report) == {"reflection"}
    row = next(r for r in report.rows if r.element == "reflection")
    assert row.max_error == pytest.approx(2.0, rel=1e-6)  # a pseudoscalar flips sign
    with pytest.raises(AssertionError, match="reflection"):
        assert_invariant(model, (pos,), POINTS, "O3", generator=3)


def test_icosahedral_model_fails_so3_passes_icosahedral(pos):
    model = ex.icosahedral_model()
    with pytest.raises(AssertionError, match="haar"):
        assert_invariant(model, (pos,), POINTS, "SO3", generator=4)
    report = assert_invariant(model, (pos,), POINTS, "icosahedral+perm", generator=4)
    assert report.passed and "finite:icosahedral" in {r.element for r in report.rows}
    assert not equivariance_error(model, (pos,), POINTS, "scalar", "octahedral", generator=4).passed


def test_nonperm_model_fails_permutations_only(pos):
    report = equivariance_error(ex.nonperm_model(), (pos,), POINTS, "node:scalar", "E3+perm", generator=5)
    assert _failing_elements(report) == {"perm", "haar"}  # haar elements of E3+perm permute too
    assert equivariance_error(ex.nonperm_model(), (pos,), POINTS, "node:scalar", "E3", generator=5).passed


def test_report_table_names_outputs_elements_and_status(pos):
    def fn(x):
        return {"energy": torch.pdist(x).sum(), "first": x[0, 0]}

    report = equivariance_error(fn, {"x": pos}, {"x": "points"}, {"energy": "scalar", "first": "scalar"},
                                "SO3", generator=6)
    text = str(report)
    assert "group SO3" in text and "float64" in text and "FAILED: 1 of 4 rows" in text
    status = {}
    for line in text.splitlines()[3:-1]:
        status.setdefault(line.split()[0], set()).add(line.split()[-1])
    assert status == {"out['energy']": {"ok"}, "out['first']": {"ok", "FAIL"}}  # identity passes
    assert report.max_error == max(r.max_error for r in report.rows)


def test_tuple_inputs_and_outputs_with_edge_index(geodl_generator):
    n = 7
    pos = torch.randn(n, 3, dtype=torch.float64, generator=geodl_generator)
    edge_index = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 0], [1, 2, 3, 4, 5, 6, 0, 3]])

    def message_passing(x, ei):  # per-node sum of incoming relative vectors, and its degree
        rel = x[ei[0]] - x[ei[1]]
        out = torch.zeros_like(x).index_add_(0, ei[1], rel)
        deg = torch.zeros(n, dtype=x.dtype).index_add_(0, ei[1], torch.ones(ei.shape[1], dtype=x.dtype))
        return out, deg

    kinds = ("node:points", "edge_index")
    assert assert_equivariant(message_passing, (pos, edge_index), kinds, ("node:vectors", "node:scalar"),
                              "E3+perm", generator=7).passed
    # ignoring the relabelling (declaring edge_index a plain scalar) must break permutation rows
    report = equivariance_error(message_passing, (pos, edge_index), ("node:points", "scalar"),
                                ("node:vectors", "node:scalar"), "E3+perm", generator=7)
    assert "perm" in _failing_elements(report)


def test_sh_and_pseudovector_kinds(geodl_generator):
    from e3nn import o3

    x = torch.randn(5, 3, dtype=torch.float64, generator=geodl_generator)

    def sh(v):
        return o3.spherical_harmonics([0, 1, 2], v, normalize=True)

    assert assert_equivariant(sh, (x,), ("vectors",), "sh:2:e3nn", "O3", generator=8).passed
    with pytest.raises(ValueError, match="out_kinds"):  # 9 coefficients are not sh:1
        equivariance_error(sh, (x,), ("vectors",), "sh:1:e3nn", "SO3", generator=8)
    cross = lambda a: torch.linalg.cross(a[0], a[1])  # noqa: E731
    assert assert_equivariant(cross, (x[:2],), ("vectors",), "pseudovectors", "O3", generator=8).passed
    assert "reflection" in _failing_elements(
        equivariance_error(cross, (x[:2],), ("vectors",), "vectors", "O3", generator=8))


def test_tolerance_follows_input_dtype_and_output_scale(geodl_generator):
    x = torch.randn(6, 3, dtype=torch.float64, generator=geodl_generator)

    def leaky(v):  # invariant up to a relative error 1e-7
        return torch.pdist(v).sum() * (1 + 1e-7 * torch.tanh(v[0, 0]))

    assert not equivariance_error(leaky, (x,), POINTS, "scalar", "SO3", generator=9).passed
    assert equivariance_error(leaky, (x.float(),), POINTS, "scalar", "SO3", generator=9).passed
    assert equivariance_error(leaky, (x,), POINTS, "scalar", "SO3", generator=9, rtol=1e-5).passed
    assert equivariance_error(leaky, (x,), POINTS, "scalar", "SO3", generator=9, dtype=torch.float32).passed
    big = equivariance_error(lambda v: 1e6 * leaky(v), (x,), POINTS, "scalar", "SO3", generator=9, rtol=1e-5)
    assert big.passed  # relative: scaling the output does not change the verdict
    assert default_rtol(torch.float32) < default_rtol(torch.bfloat16)


def test_nan_output_and_changing_shape_fail(geodl_generator):
    x = torch.randn(4, 3, dtype=torch.float64, generator=geodl_generator)
    x[0, 0] = -1.0
    report = equivariance_error(lambda v: torch.log(v[:, 0]).sum(), (x,), POINTS, "scalar", "SO3", generator=0)
    assert not report.passed and report.max_error == float("inf")

    def drop_last_when_negative(v):
        return v if v[0, 0] > 0 else v[:-1]

    shape = equivariance_error(drop_last_when_negative, (x,), ("points",), "points", "SO3", generator=0,
                               n_samples=16)
    assert not shape.passed and shape.max_error == float("inf")


def test_same_generator_seed_gives_same_report(pos):
    a = equivariance_error(ex.noninvariant_model(), (pos,), POINTS, "scalar", "E3+perm", generator=11)
    b = equivariance_error(ex.noninvariant_model(), (pos,), POINTS, "scalar", "E3+perm",
                           generator=torch.Generator().manual_seed(11))
    assert [r.max_error for r in a.rows] == [r.max_error for r in b.rows]


@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(inputs=(torch.randn(4, 2),)), ValueError, "inputs[0]"),  # points in 2D for a 3D group
    (dict(inputs=(torch.tensor([[0.0, 1, float("nan")]] * 4),)), ValueError, "inputs[0]"),
    (dict(in_kinds=("node:spinors",)), ValueError, "in_kinds[0]"),
    (dict(out_kinds="sh:x"), ValueError, "out_kinds"),
    (dict(group="E4"), ValueError, "group"),
    (dict(in_kinds="node:points"), TypeError, "in_kinds"),  # tuple inputs, one string
    (dict(in_kinds=("node:points", "scalar")), ValueError, "in_kinds"),
    (dict(inputs={"pos": torch.randn(4, 3)}), TypeError, "in_kinds"),  # dict inputs, tuple kinds
    (dict(inputs=([[0.0, 1.0, 2.0]],)), TypeError, "inputs[0]"),
    (dict(inputs=torch.randn(4, 3), in_kinds=("node:points",)), TypeError, "in_kinds"),
    (dict(fn=3), TypeError, "fn"),
    (dict(n_samples=-1), ValueError, "n_samples"),
    (dict(generator="seed"), TypeError, "generator"),
    (dict(dtype=torch.int64), TypeError, "dtype"),
    (dict(out_kinds=("scalar", "scalar")), TypeError, "out_kinds"),  # fn returns one tensor
])
def test_bad_input_names_the_argument(kwargs, exc, name):
    args = dict(fn=lambda p: torch.pdist(p).sum(), inputs=(torch.randn(4, 3),), in_kinds=("node:points",),
                out_kinds="scalar", group="E3+perm")
    args.update(kwargs)
    with pytest.raises(exc, match=name.replace("[", r"\[").replace("]", r"\]")):
        equivariance_error(args.pop("fn"), args.pop("inputs"), args.pop("in_kinds"), args.pop("out_kinds"),
                           args.pop("group"), **args)


def test_node_count_must_agree_and_exist():
    with pytest.raises(ValueError, match=r"inputs\[1\]"):
        equivariance_error(lambda a, b: a.sum() + b.sum(), (torch.randn(4, 3), torch.randn(5)),
                           ("node:points", "node:scalar"), "scalar", "E3+perm")
    with pytest.raises(ValueError, match="in_kinds"):  # a permuting group needs a node input
        equivariance_error(lambda a: a.sum(), (torch.randn(4, 3),), ("points",), "scalar", "SO3+perm")
    with pytest.raises(ValueError, match=r"inputs\[1\]"):  # an edge pointing past the last node
        equivariance_error(lambda a, e: a.sum(), (torch.randn(3, 3), torch.tensor([[0], [3]])),
                           ("node:points", "edge_index"), "scalar", "SO3+perm")


def test_shape_errors_are_raised_before_the_model_runs():
    calls = []

    def fn(p):
        calls.append(p.shape)
        return p.sum()

    with pytest.raises(ValueError, match=r"inputs\['pos'\].*node:vectors"):
        equivariance_error(fn, {"pos": torch.randn(5, 2)}, {"pos": "node:vectors"}, "scalar", "O3", generator=0)
    with pytest.raises(ValueError, match=r"inputs\[0\].*sh:1"):
        equivariance_error(fn, (torch.randn(5, 3),), ("sh:1",), "scalar", "SO3", generator=0)
    assert calls == []


# ------------------------------------------------------------------ small layers on the new kinds
def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _so3_blocks(F, lmax):
    i, out = 0, []
    for l in range(lmax + 1):
        k = 2 * l + 1
        out.append(F[..., i:i + k * k].unflatten(-1, (k, k)))
        i += k * k
    return out


def test_so3_layers():
    """SO(3) convolution (right multiplication of each degree, plus channel mixing) commutes with the
    left-regular action; S² -> SO(3) lifting by an outer product with a filter maps sh:L:e3nn to so3:L."""
    from geodl.testing import random_inputs

    L, C = 2, 3
    (F,) = random_inputs(["so3:2"], C, generator=_gen(0))  # (C, 35): C channels
    W = [torch.randn(2 * l + 1, 2 * l + 1, generator=_gen(l), dtype=torch.float64) for l in range(L + 1)]
    mix = torch.randn(C, C, generator=_gen(9), dtype=torch.float64)

    def conv(F):
        return torch.cat([(mix @ b.flatten(-2)).unflatten(-1, b.shape[-2:]).__matmul__(w).flatten(-2)
                          for b, w in zip(_so3_blocks(F, L), W)], dim=-1)

    def wrong(F):  # multiplying from the left does not commute with D(R) F
        return torch.cat([(w @ b).flatten(-2) for b, w in zip(_so3_blocks(F, L), W)], dim=-1)

    assert_equivariant(conv, (F,), ("so3:2",), "so3:2", "O3", generator=0)
    assert not equivariance_error(wrong, (F,), ("so3:2",), "so3:2", "SO3", generator=0).passed

    (x,) = random_inputs(["sh:2:e3nn"], C, generator=_gen(1))
    psi = torch.randn(9, generator=_gen(2), dtype=torch.float64)

    def lift(x):
        parts, i = [], 0
        for l in range(L + 1):
            k = 2 * l + 1
            parts.append((x[..., i:i + k, None] * psi[i:i + k]).flatten(-2))
            i += k
        return torch.cat(parts, dim=-1)

    assert_equivariant(lift, (x,), ("sh:2:e3nn",), "so3:2", "O3", generator=0)
    assert not equivariance_error(lift, (x,), ("sh:2",), "so3:2", "SO3", generator=0).passed  # wrong basis


def test_rotation_layers():
    """Right multiplication by a fixed rotation is left-equivariant; a pose head (Gram–Schmidt of two
    relative positions) maps node:points to a rotation under SE(3)+perm-free inputs."""
    from geodl.groups import random_rotation, sixd_to_matrix

    R = random_rotation(5, generator=_gen(0), dtype=torch.float64)
    R0 = random_rotation(generator=_gen(1), dtype=torch.float64)
    assert_equivariant(lambda r: r @ R0, (R,), ("rotation",), "rotation", "SO3", generator=0)
    assert not equivariance_error(lambda r: R0 @ r, (R,), ("rotation",), "rotation", "SO3", generator=0).passed

    pos = torch.randn(6, 3, generator=_gen(2), dtype=torch.float64)

    def pose(p):
        a, b = p[1] - p[0], p[2] - p[0]
        return sixd_to_matrix(torch.cat([a, b]))

    assert_equivariant(pose, (pos,), POINTS, "rotation", "SE3", generator=0)
    report = equivariance_error(pose, (pos,), POINTS, "rotation", "E3", generator=0)
    assert "reflection" in _failing_elements(report)  # a proper rotation cannot follow a reflection


def _equirect_conv(kernel, circular=True):
    def fn(f):
        x = f[:, None]
        x = torch.nn.functional.pad(x, (1, 1, 0, 0), mode="circular" if circular else "constant")
        x = torch.nn.functional.pad(x, (0, 0, 1, 1))  # zero rows beyond the poles: symmetric
        return torch.nn.functional.conv2d(x, kernel[None, None])[:, 0]
    return fn


def test_equirect_layers():
    """A circular-in-azimuth convolution whose kernel is symmetric under the half turn is
    equivariant under rolls and the pole flip; a point-cloud -> map histogram is equivariant too."""
    from geodl.testing import random_inputs

    (f,) = random_inputs(["equirect:6x8"], 2, generator=_gen(0))
    k = torch.randn(3, 3, generator=_gen(1), dtype=torch.float64)
    sym = k + k.flip(0, 1)
    assert_equivariant(_equirect_conv(sym), (f,), ("equirect:6x8",), "equirect:6x8", "equirect", generator=0)
    report = equivariance_error(_equirect_conv(k), (f,), ("equirect:6x8",), "equirect:6x8", "equirect", generator=0)
    assert "pole_flip" in _failing_elements(report) and "roll" not in _failing_elements(report)
    report = equivariance_error(_equirect_conv(sym, circular=False), (f,), ("equirect:6x8",), "equirect:6x8",
                                "azimuth:8", generator=0)
    assert "roll" in _failing_elements(report)

    H, W = 6, 8
    pos = torch.randn(40, 3, generator=_gen(2), dtype=torch.float64)

    def project(p):
        th = torch.arccos((p[:, 2] / p.norm(dim=-1)).clamp(-1, 1))
        ph = torch.atan2(p[:, 1], p[:, 0]) % (2 * torch.pi)
        idx = (th / (torch.pi / H)).long().clamp(max=H - 1) * W + (ph / (2 * torch.pi / W)).long() % W
        return torch.bincount(idx, minlength=H * W).to(p.dtype).view(H, W)

    assert_equivariant(project, (pos,), POINTS, "equirect:6x8", "equirect:8+perm", generator=0)
    # a map whose columns start at the wrong azimuth is not equivariant under the flip
    shifted = lambda p: project(p).roll(1, -1)  # noqa: E731
    assert not equivariance_error(shifted, (pos,), POINTS, "equirect:6x8", "equirect:8", generator=0).passed


def test_image2d_layers():
    """A D4-symmetrised convolution is equivariant under D4, a plain one is not; rendering 2D points
    into pixels is equivariant from points to image2d."""
    from geodl.groups import GroupElement, act

    img = torch.randn(2, 7, 7, generator=_gen(0), dtype=torch.float64)
    k = torch.randn(3, 3, generator=_gen(1), dtype=torch.float64)
    sym = sum(act("image2d", GroupElement(rotation=R), k) for R in get_group("D4").table) / 8
    conv = lambda kern: (lambda x: torch.nn.functional.conv2d(x[:, None], kern[None, None], padding=1)[:, 0])  # noqa: E731
    assert_equivariant(conv(sym), (img,), ("image2d",), "image2d", "D4", generator=0)
    report = equivariance_error(conv(k), (img,), ("image2d",), "image2d", "D4", generator=0)
    assert "finite:D4" in _failing_elements(report)

    pts = torch.randn(30, 2, generator=_gen(3), dtype=torch.float64) * 1.5

    def render(p):  # pixel (i, j) covers the unit square around (j - 3, 3 - i)
        j = (p[:, 0] + 3.5).floor().long().clamp(0, 6)
        i = (3.5 - p[:, 1]).floor().long().clamp(0, 6)
        return torch.bincount(i * 7 + j, minlength=49).to(p.dtype).view(7, 7)

    assert_equivariant(render, (pts,), POINTS, "image2d", "D4+perm", generator=0)
    upside_down = lambda p: render(p).flip(0).transpose(0, 1)  # noqa: E731 (rows and columns mixed up)
    assert not equivariance_error(upside_down, (pts,), POINTS, "image2d", "D4", generator=0).passed


def test_piecewise_layers():
    """Subtracting each part's centroid is equivariant under one E(3) element per part; subtracting
    the global centroid is not; the checker needs the labels input."""
    pos = torch.randn(9, 3, generator=_gen(0), dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 2])

    def part_centred(p, lab):
        sums = torch.zeros(3, 3, dtype=p.dtype).index_add_(0, lab, p)
        counts = torch.bincount(lab, minlength=3).to(p.dtype)[:, None]
        return p - (sums / counts)[lab]

    kinds = ("node:points", "parts")
    report = assert_equivariant(part_centred, (pos, labels), kinds, "node:vectors", "E3^parts+perm", generator=0)
    assert "parts" in {r.element for r in report.rows}
    report = equivariance_error(lambda p, lab: p - p.mean(0), (pos, labels), kinds, "node:vectors", "E3^parts",
                                generator=0)
    assert {"parts", "haar"} <= _failing_elements(report)
    assert "translation" in _failing_elements(report)  # part 0 alone moved
    assert assert_equivariant(lambda p, lab: p - p.mean(0), (pos, labels), kinds, "node:vectors", "E3",
                              generator=0).passed  # globally equivariant all the same
    with pytest.raises(ValueError, match="parts"):
        equivariance_error(part_centred, (pos, labels), ("node:points", "node:scalar"), "node:vectors",
                           "E3^parts", generator=0)


def test_irreps_layers():
    from e3nn import o3

    lin = o3.Linear("2x0e+1x1o+1x2e", "1x0e+2x1o+1x2e").double()
    x = torch.randn(5, lin.irreps_in.dim, generator=_gen(0), dtype=torch.float64)
    assert_equivariant(lin, (x,), ("node:2x0e+1x1o+1x2e",), "node:1x0e+2x1o+1x2e", "O3+perm", generator=0)
    dense = torch.nn.Linear(lin.irreps_in.dim, lin.irreps_out.dim).double()
    assert not equivariance_error(dense, (x,), ("2x0e+1x1o+1x2e",), "1x0e+2x1o+1x2e", "SO3", generator=0).passed
    # parity matters: declaring the 1o input as 1e fails the reflections only
    report = equivariance_error(lin, (x,), ("2x0e+1x1e+1x2e",), "1x0e+2x1o+1x2e", "O3", generator=0)
    assert "reflection" in _failing_elements(report)
    assert equivariance_error(lin, (x,), ("2x0e+1x1e+1x2e",), "1x0e+2x1o+1x2e", "SO3", generator=0).passed


def test_batch_kind():
    """A per-graph pooled invariant: the batch vector is permuted with the nodes."""
    pos = torch.randn(8, 3, generator=_gen(0), dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])

    def spread(p, b):
        sums = torch.zeros(3, 3, dtype=p.dtype).index_add_(0, b, p)
        mean = sums / torch.bincount(b, minlength=3).to(p.dtype)[:, None]
        return torch.zeros(3, dtype=p.dtype).index_add_(0, b, ((p - mean[b]) ** 2).sum(-1))

    assert_equivariant(spread, (pos, batch), ("node:points", "batch"), "scalar", "E3+perm", generator=0)
    report = equivariance_error(spread, (pos, batch), ("node:points", "scalar"), "scalar",
                                "E3+perm", generator=0)
    assert "perm" in _failing_elements(report)  # the batch vector not permuted with its nodes
