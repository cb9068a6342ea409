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
    assert {r.element for r in report.rows} == {"identity", "reflection", "translation", "perm", "haar"}
    assert report.max_error <= default_rtol(geodl_dtype)
    assert sum(r.n for r in report.rows) == len(get_group("E3+perm").structured(n_nodes=12)) + 4


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
    assert _failing_elements(report) == {"reflection", "translation", "haar"}
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
