"""A checker that never misleads: a tolerance floor for outputs that are zero by symmetry, a hint for
float32-sized errors in float64, permutations within graphs and per-graph elements, no side effects
on the module checked, one row per element type with NaN and shape failures told apart, and PyG
``Data``/``Batch``-taking and e3nn models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from geodl.groups import Symmetry
from geodl.testing import EquivarianceRow, assert_equivariant, atol_floor, check_module, equivariance_error
from geodl.testing import examples as E

_G = torch.Generator().manual_seed(0)
POS = torch.randn(12, 3, dtype=torch.float64, generator=_G)
BATCH = torch.tensor([0] * 3 + [1] * 4 + [2] * 5)
SYMMETRIC = torch.cat([POS[:6], -POS[:6]])  # centrosymmetric: its dipole is exactly zero


def _elements(report, failing=False):
    return {r.element for r in (report.failures if failing else report.rows)}


# ------------------------------------------------------------------ 1. absolute tolerance floor
class _CentredSum(nn.Module):
    """``sum(pos - mean(pos))``: E(3)- and permutation-invariant, and zero up to rounding."""

    symmetry = Symmetry("E3+perm", {"pos": "node:points"}, "scalar")

    def __init__(self, leak: float = 0.0):
        super().__init__()
        self.leak = leak

    def forward(self, pos):
        return (pos - pos.mean(0)).sum() + self.leak * pos[:, 0].sum()


def test_output_zero_by_symmetry_passes_on_rounding_noise():
    report = check_module(_CentredSum(), {"pos": POS * 10})
    assert report.passed, str(report)
    dipole = equivariance_error(lambda p: p.sum(0), (SYMMETRIC,), ("node:vectors",), "vectors", "O3+perm",
                                generator=0)
    assert dipole.passed and 0 < max(r.max_abs_error for r in dipole.rows) < 1e-13, str(dipole)
    assert all(0 < r.atol < 1e-12 for r in dipole.rows)  # the floor, shown per row


def test_genuinely_broken_models_still_fail_above_the_floor():
    report = check_module(_CentredSum(leak=1e-9), {"pos": POS}, checks=("equivariance",), raise_on_fail=False)
    assert report.failed == ["equivariance"], str(report)
    odd = equivariance_error(lambda p: p.sum(0) + 1e-10 * p[0], (SYMMETRIC,), ("node:vectors",), "vectors",
                             "O3+perm", generator=0)
    assert _elements(odd, failing=True) == {"perm", "haar"}  # p[0] is equivariant, but not under permutations
    # an explicit atol replaces the floor: atol=0 is the strict comparison
    strict = equivariance_error(lambda p: p.sum(0), (SYMMETRIC,), ("node:vectors",), "vectors", "O3+perm",
                                generator=0, atol=0.0)
    assert not strict.passed and all(r.atol == 0.0 for r in strict.rows)


def test_atol_floor_scales_with_eps_size_and_scale_and_is_capped():
    f = atol_floor(torch.float64, 16, 1.0)
    assert f == pytest.approx(16 * torch.finfo(torch.float64).eps * 4)
    assert atol_floor(torch.float64, 64, 1.0) == pytest.approx(2 * f)
    assert atol_floor(torch.float64, 16, 10.0) == pytest.approx(10 * f)
    assert atol_floor(torch.float64, 16, 1e-3) == f  # max(scale, 1)
    assert atol_floor(torch.float32, 16, 1.0) > 1e8 * f
    assert atol_floor(torch.bfloat16, 10**6, 3.0) == pytest.approx(5e-2 * 3.0)  # at most rtol · scale


def test_batching_and_compile_use_the_floor():
    class CentredDipole(nn.Module):
        symmetry = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "vectors", batch_arg="batch")

        def forward(self, pos, batch):
            mean = E._graph_mean(pos, batch)
            return E._graph_mean(pos - mean[batch], batch)  # zero per graph, up to rounding

    report = check_module(CentredDipole(), {"pos": POS * 100, "batch": BATCH}, checks=("batching", "equivariance"))
    assert report.passed, str(report)


# ------------------------------------------------------------------ 2. float32-sized errors in float64
def test_e3nn_model_built_in_float32_gets_a_float32_hint():
    model = _E3nnModel()  # built under float32, converted by the checker with .to(float64)
    report = check_module(model, {"pos": POS[:6]}, checks=("equivariance",), raise_on_fail=False)
    assert report.failed == ["equivariance"]
    detail = report.items["equivariance"][1]
    assert "float32-sized in a float64 run" in detail and "set_default_dtype" in detail, detail


class _Float32Projection(nn.Module):
    """Pair distances after a projection kept in a float32 plain attribute (``.to()`` does not convert it)."""

    symmetry = Symmetry("E3+perm", {"pos": "node:points"}, "scalar")

    def __init__(self):
        super().__init__()
        self.proj = torch.eye(3) * 0.7  # float32, a plain attribute

    def forward(self, pos):
        return torch.pdist(pos.to(self.proj.dtype) @ self.proj).sum().to(pos.dtype)


def test_float32_constant_is_named_in_the_report():
    report = check_module(_Float32Projection(), {"pos": POS}, checks=("equivariance",), raise_on_fail=False)
    detail = report.items["equivariance"][1]
    assert report.failed == ["equivariance"] and "float32-sized" in detail
    assert "proj (float32)" in detail, detail


def test_no_float32_hint_for_genuine_errors_or_float32_runs():
    broken = equivariance_error(E.noninvariant_model(), (POS,), ("node:points",), "scalar", "E3+perm", generator=0)
    assert not broken.passed and broken.hints == [] and "float32-sized" not in str(broken)
    f32 = equivariance_error(lambda p: torch.pdist(p.float()).sum() * (1 + 1e-3 * p[0, 0]), (POS.float(),),
                             ("node:points",), "scalar", "SO3", generator=0)
    assert not f32.passed and f32.hints == []


# ------------------------------------------------------------------ 3. permutations within graphs, per-graph elements
class _DenseBatchEnergy(nn.Module):
    """Per-graph spread around the centroid through PyG's ``to_dense_batch`` (needs a sorted batch)."""

    symmetry = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "scalar", batch_arg="batch")

    def forward(self, pos, batch):
        from torch_geometric.utils import to_dense_batch

        x, mask = to_dense_batch(pos, batch)
        m = mask[..., None].to(x.dtype)
        centre = (x * m).sum(1) / m.sum(1)
        return (((x - centre[:, None]) * m) ** 2).sum((1, 2))


def test_to_dense_batch_model_passes_with_within_graph_permutations():
    report = check_module(_DenseBatchEnergy(), {"pos": POS, "batch": BATCH})
    assert report.passed, str(report)


@pytest.mark.parametrize("batch", [BATCH, torch.tensor([2, 0, 1, 1, 0, 2, 2, 0, 1, 2, 2, 1])],
                         ids=["sorted", "unsorted"])
def test_permutations_keep_the_batch_vector(batch):
    seen = []

    def spread(p, b):
        seen.append(b.clone())
        return E._graph_mean(p, b).sub(E._graph_mean(p, b)).sum(-1) + torch.bincount(b).to(p.dtype)

    report = equivariance_error(spread, (POS, batch), ("node:points", "batch"), "scalar", "E3+perm", generator=0)
    assert report.passed and "perm" in _elements(report) and len(seen) > 5
    assert all(torch.equal(b, batch) for b in seen)  # every graph keeps its positions


class _GraphCentroid(nn.Module):
    """The centroid of each graph (kind ``points``, one row per graph); ``leak`` mixes in the batch mean."""

    symmetry = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, "points", batch_arg="batch")

    def __init__(self, leak: bool = False):
        super().__init__()
        self.leak = leak

    def forward(self, pos, batch):
        c = E._graph_mean(pos, batch)
        return c + (pos.mean(0) - c.mean(0)) if self.leak else c


def test_per_graph_rows_catch_information_leaking_between_graphs():
    kinds = ("node:points", "batch")
    good = equivariance_error(E.equivariant_model(), (POS, BATCH), kinds, "node:vectors", "E3+perm", generator=0,
                              per_graph=True)
    assert good.passed and "per_graph" in _elements(good)
    mixing = equivariance_error(E.batch_mixing_model(), (POS, BATCH), kinds, "node:vectors", "E3+perm",
                                generator=0, per_graph=True)
    assert _elements(mixing, failing=True) == {"per_graph"}, str(mixing)
    # graph-level outputs: row b moves with graph b
    assert check_module(_GraphCentroid(), {"pos": POS, "batch": BATCH}, per_graph=True).passed
    leaky = check_module(_GraphCentroid(leak=True), {"pos": POS, "batch": BATCH}, per_graph=True,
                         checks=("equivariance",), raise_on_fail=False)
    assert leaky.failed == ["equivariance"] and "per_graph" in leaky.items["equivariance"][1]
    # off by default, so the example that mixes graphs fails only its batching item
    assert "per_graph" not in str(check_module(E.batch_mixing_model(), {"pos": POS, "batch": BATCH},
                                               checks=("equivariance",)))


def test_per_graph_bad_arguments():
    with pytest.raises(ValueError, match="per_graph: needs an input of kind 'batch'"):
        equivariance_error(E.equivariant_model(), (POS,), ("node:points",), "node:vectors", "E3+perm", per_graph=True)
    with pytest.raises(ValueError, match="per_graph: group 'perm'"):
        equivariance_error(lambda p, b: p, (POS, BATCH), ("node:points", "batch"), "node:points", "perm",
                           per_graph=True)
    with pytest.raises(ValueError, match="per_graph: output out"):
        equivariance_error(lambda p, b: p.mean(0), (POS, BATCH), ("node:points", "batch"), "points", "E3+perm",
                           per_graph=True)
    with pytest.raises(TypeError, match="per_graph"):
        check_module(E.invariant_model(), {"pos": POS, "batch": BATCH}, per_graph=1)


# ------------------------------------------------------------------ 4. no side effects
class _NormNet(nn.Module):
    """Per-row Linear, BatchNorm and Dropout: permutation-equivariant over rows (in eval mode)."""

    symmetry = Symmetry("perm", {"x": "node:scalar"}, "node:scalar")

    def __init__(self, p=0.0):
        super().__init__()
        self.lin, self.bn, self.drop = nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(p)

    def forward(self, x):
        return self.drop(self.bn(self.lin(x)))


def test_equivariance_error_leaves_batchnorm_statistics_and_flags_alone():
    torch.manual_seed(0)
    model = _NormNet()
    x = torch.randn(10, 3) * 30 + 20
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert_equivariant(model, (x,), ("node:scalar",), "node:scalar", "perm", generator=0)
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean stays 0, num_batches_tracked 0


def test_dropout_model_runs_in_eval_mode_and_the_rng_is_restored():
    torch.manual_seed(0)
    model = _NormNet(p=0.5)
    model.lin.weight.grad = torch.ones_like(model.lin.weight)
    rng = torch.get_rng_state()
    report = assert_equivariant(model, (POS.float(),), ("node:scalar",), "node:scalar", "perm", generator=0)
    assert report.passed  # dropout off: the identity row is not fooled by random masks
    assert torch.equal(torch.get_rng_state(), rng) and model.training and model.drop.training
    assert torch.equal(model.lin.weight.grad, torch.ones_like(model.lin.weight))
    full = check_module(model, {"x": POS.float()})
    assert full.passed and model.training
    assert torch.equal(model.lin.weight.grad, torch.ones_like(model.lin.weight))
    assert torch.equal(torch.get_rng_state(), rng)


# ------------------------------------------------------------------ 5. rows per element type; NaN vs shape
def test_rows_name_rotation_reflection_translation_and_permutation_separately():
    def off_centre(p):  # rotation-invariant about the origin, not translation-invariant
        return p.mean(0).norm()

    report = equivariance_error(off_centre, (POS,), ("node:points",), "scalar", "E3+perm", generator=0)
    rows = {r.element: r for r in report.rows}
    assert {"identity", "rotation", "reflection", "translation", "perm", "haar"} <= set(rows)
    assert rows["rotation"].passed and rows["reflection"].passed and rows["perm"].passed
    assert not rows["translation"].passed and not rows["haar"].passed
    assert rows["rotation"].n + rows["reflection"].n >= 4  # the rotation part of each random element


def test_nan_and_changed_shape_have_their_own_status_and_message():
    x = POS.clone()
    x[0, 0] = 1.0
    nan = equivariance_error(lambda v: torch.where(v[0, 0] > 0, v.norm(), torch.nan), (x,), ("points",), "scalar",
                             "SO3", generator=0, n_samples=16)
    bad = [r for r in nan.rows if not r.passed]
    assert bad and all(r.issue == "nan" and r.status == "NaN" for r in bad), str(nan)
    assert "NaN/inf" in bad[0].message and "fn(g·x)" in bad[0].message and "NaN" in str(nan)
    x[0, 0] = -1.0
    ref_nan = equivariance_error(lambda v: torch.log(v[:, 0]).sum(), (x,), ("points",), "scalar", "SO3",
                                 generator=0)
    assert all(r.issue == "nan" and "fn(x) itself" in r.message for r in ref_nan.rows)

    def drop_last_when_negative(v):
        return v if v[0, 0] > 0 else v[:-1]

    xs = POS.clone()
    xs[0, 0] = 1.0
    shape = equivariance_error(drop_last_when_negative, (xs,), ("points",), "points", "SO3", generator=0,
                               n_samples=16)
    bad = [r for r in shape.rows if not r.passed]
    assert bad and all(r.issue == "shape" and r.status == "SHAPE" for r in bad), str(shape)
    assert "(11, 3)" in bad[0].message and "SHAPE" in str(shape)
    assert shape.max_error == float("inf")  # the number is unchanged; the status says why


def test_row_defaults_keep_old_constructor_calls_working():
    row = EquivarianceRow("out", "scalar", "haar", 4, 3e-17, 1e-16, 1e-10, 0.0, True)
    assert row.issue == "" and row.message == "" and row.status == "ok"


# ------------------------------------------------------------------ 6. PyG Data/Batch-taking models, e3nn
class _DataEnergy(nn.Module):
    """An invariant per-graph energy over the edges of a PyG ``Data``/``Batch`` taken whole."""

    symmetry = Symmetry("E3+perm", {"pos": "node:points", "edge_index": "edge_index", "batch": "batch"}, "scalar",
                        batch_arg="batch")

    def __init__(self, mix: bool = False):
        super().__init__()
        self.mix = mix
        self.mlp = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))

    def forward(self, data):
        src, dst = data.edge_index
        d = (data.pos[src] - data.pos[dst]).norm(dim=-1, keepdim=True)
        feat = torch.cat([d, data.edge_attr.to(d.dtype)], -1)
        e = self.mlp(feat).squeeze(-1)
        out = e.new_zeros(data.num_graphs).index_add(0, data.batch[src], e)
        return out + out.mean() if self.mix else out


def _pyg_batch():
    from torch_geometric.data import Batch, Data

    g = torch.Generator().manual_seed(1)
    graphs = []
    for n in (4, 5, 6):
        src, dst = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
        keep = src != dst
        ei = torch.stack([src[keep], dst[keep]])
        graphs.append(Data(pos=torch.randn(n, 3, generator=g), edge_index=ei,
                           edge_attr=torch.randn(ei.shape[1], 1, generator=g), y=torch.tensor([float(n)])))
    return Batch.from_data_list(graphs)


def test_module_taking_a_pyg_batch_runs_every_item():
    torch.manual_seed(0)
    batch = _pyg_batch()
    report = check_module(_DataEnergy(), batch, per_graph=True)
    assert report.passed and all(s == "passed" for s, _ in report.items.values()), str(report)
    assert "3 graphs" in report.items["batching"][1] and "per_graph" in report.items["equivariance"][1]
    mixing = check_module(_DataEnergy(mix=True), batch, raise_on_fail=False)
    assert mixing.failed == ["batching"], str(mixing)
    with pytest.raises(ValueError, match="no field \\['z'\\]"):
        check_module(_DataEnergy(), batch, in_kinds={"pos": "node:points", "z": "node:scalar"}, group="E3+perm",
                     out_kinds="scalar")


class _E3nnModel(nn.Module):
    """``o3.Linear`` after a ``FullyConnectedTensorProduct`` of the spherical harmonics of positions."""

    symmetry = Symmetry("O3+perm", {"pos": "node:vectors"}, "node:1x0e+1x1o")

    def __init__(self):
        super().__init__()
        from e3nn import o3

        self.sh = o3.SphericalHarmonics("1x0e+1x1o+1x2e", normalize=False, normalization="component")
        self.tp = o3.FullyConnectedTensorProduct("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e", "1x0e+1x1o")
        self.lin = o3.Linear("1x0e+1x1o", "1x0e+1x1o")

    def forward(self, pos):
        s = self.sh(pos)
        return self.lin(self.tp(s, s))


def test_e3nn_model_built_in_float64_passes():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        model = _E3nnModel()
    finally:
        torch.set_default_dtype(old)
    assert torch.get_default_dtype() == old
    report = check_module(model, {"pos": POS[:6]})
    assert report.passed, str(report)


def test_atol_floor_bad_arguments():
    with pytest.raises(TypeError, match="dtype"):
        atol_floor(torch.long, 3, 1.0)
    with pytest.raises(ValueError, match="numel"):
        atol_floor(torch.float64, -1, 1.0)
    with pytest.raises(TypeError, match="scale"):
        atol_floor(torch.float64, 3, "1")
    with pytest.raises(ValueError, match="scale"):
        atol_floor(torch.float64, 3, float("nan"))
    with pytest.raises(ValueError, match="rtol"):
        atol_floor(torch.float64, 3, 1.0, rtol=-1.0)


def test_cli_per_graph_flag(capsys):
    from geodl.cli import main

    argv = ["check", "geodl.testing.examples:batch_mixing_model", "--group", "E3+perm", "--inputs",
            "node:points,batch", "--outputs", "node:vectors"]
    assert main(argv) == 0
    assert main(argv + ["--per-graph"]) == 1
    out = capsys.readouterr().out
    assert "per_graph" in out and "FAIL" in out


def test_random_inputs_names_kinds_when_not_a_sequence():
    from geodl.testing import random_inputs

    with pytest.raises(TypeError, match="kinds: expected a list or tuple"):
        random_inputs(None, 4)
    assert len(random_inputs(["node:points", "batch"], 4)) == 2


def test_pyg_standard_fields_map_to_kinds_without_a_declaration():
    class Undeclared(_DataEnergy):
        symmetry = None

    batch = _pyg_batch()
    report = check_module(Undeclared(), batch, group="E3+perm", out_kinds="scalar",
                          checks=("equivariance", "batching"))
    assert report.passed and "3 graphs" in report.items["batching"][1], str(report)
    # the default covers the input kinds only: the output kinds (and the group) must still be given
    with pytest.raises(TypeError, match="declares no symmetry"):
        check_module(Undeclared(), batch, group="E3+perm")


def test_lazy_modules_are_checked_and_initialised_as_a_forward_would():
    model = nn.LazyLinear(2).double()
    assert equivariance_error(model, (POS,), ("node:scalar",), "node:scalar", "perm", generator=0).passed
    assert model.weight.shape == (2, 3)


def test_random_inputs_too_many_rows_raise_naming_n_points():
    from geodl.testing import random_inputs

    for kinds in (["node:vectors"], ["node:so3:1", "node:sh:2"], ["rotation"], ["edge_index", "batch"]):
        with pytest.raises(ValueError, match="n_points: 1000000000000 asks for random inputs"):
            random_inputs(kinds, 10**12)
    gen = torch.Generator().manual_seed(3)
    a = random_inputs(["node:points", "edge_index"], 5, generator=gen)
    b = random_inputs(["node:points", "edge_index"], 5, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # the size probe does not use the caller's generator
