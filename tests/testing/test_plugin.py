"""The pytest plugin: seeding, dtype/device parametrisation, the ``cuda`` marker, parameter helpers."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from geodl.testing import devices, dtypes
from geodl.testing.pytest_plugin import seed_for


def test_seed_is_derived_from_the_test_id_and_seeds_torch(request, geodl_seed):
    assert geodl_seed == seed_for(request.node.nodeid, request.config.getoption("--geodl-seed"))
    first = torch.rand(3)
    torch.manual_seed(geodl_seed)
    assert torch.equal(first, torch.rand(3))


def test_seeds_differ_between_tests_and_bases():
    a, b = seed_for("tests/x.py::test_a"), seed_for("tests/x.py::test_b")
    assert a != b and seed_for("tests/x.py::test_a") == a
    assert seed_for("tests/x.py::test_a", base=1) != a and 0 <= a < 2**31


def test_generator_fixture_is_seeded(geodl_generator, geodl_seed):
    assert torch.equal(torch.rand(4, generator=geodl_generator),
                       torch.rand(4, generator=torch.Generator().manual_seed(geodl_seed)))


def test_dtype_fixture_sweeps_float32_and_float64(request, geodl_dtype):
    # the subprocess test below counts the runs; here each run's id must name its dtype
    assert request.node.callspec.id in ("float32", "float64")
    assert geodl_dtype == getattr(torch, request.node.callspec.id)


def test_device_fixture(geodl_device):
    assert geodl_device in devices()
    assert torch.zeros(2, device=geodl_device).device.type == geodl_device


def test_parameter_helpers():
    assert devices()[0] == "cpu" and ("cuda" in devices()) == torch.cuda.is_available()
    assert devices(cuda=False) == ["cpu"]
    assert dtypes() == [torch.float32, torch.float64] and torch.bfloat16 in dtypes(half=True)


def test_plugin_is_loaded_through_the_entry_point_in_any_project(tmp_path):
    # a fresh pytest run in an unrelated folder, with no conftest: fixtures and markers come from the plugin
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import pytest, torch

        def test_seeded(geodl_seed):
            assert torch.initial_seed() == geodl_seed

        def test_sweep(geodl_dtype, geodl_device):
            assert torch.ones(1, dtype=geodl_dtype, device=geodl_device).dtype == geodl_dtype

        @pytest.mark.parametrize("geodl_dtype", [torch.float16])
        def test_own_parametrisation_wins(geodl_dtype):
            assert geodl_dtype == torch.float16

        @pytest.mark.cuda
        def test_needs_cuda():
            assert torch.cuda.is_available()
    """))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
                           "--geodl-seed", "5", "-rs", str(tmp_path / "test_user.py")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    n_dev = len(devices())
    expected = (f"{2 * n_dev + 3} passed" if torch.cuda.is_available()
                else f"{2 * n_dev + 2} passed, 1 skipped")
    assert proc.returncode == 0 and expected in proc.stdout, proc.stdout + proc.stderr
    assert torch.cuda.is_available() or "needs a CUDA device" in proc.stdout


@pytest.mark.cuda
def test_cuda_marker_runs_only_with_cuda():
    assert torch.cuda.is_available()
    assert torch.ones(1, device="cuda").item() == 1.0
