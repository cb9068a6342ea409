"""pytest plugin for geodl (registered through the ``pytest11`` entry point, so it loads in every
pytest run where geodl is installed: it imports only pytest and the standard library, and nothing
here is autouse).

Fixtures
--------
``geodl_seed``       seeds torch, ``random`` and numpy (when imported) from the test's id and the
                     ``--geodl-seed`` option; returns the seed. Use it (or wrap it in an autouse
                     fixture in your ``conftest.py``) for reproducible tests.
``geodl_generator``  a CPU ``torch.Generator`` seeded with ``geodl_seed``.
``geodl_dtype``      parametrised over ``torch.float32`` and ``torch.float64``.
``geodl_device``     parametrised over ``"cpu"`` and, when available, ``"cuda"``.

Markers
-------
``cuda``             the test needs a CUDA device; it is skipped when none is present.

Examples
--------
A test module in any project::

    def test_energy_is_invariant(geodl_dtype, geodl_device, geodl_generator):
        pos = torch.randn(10, 3, generator=geodl_generator).to(geodl_dtype).to(geodl_device)
        assert_invariant(model, (pos,), ("node:points",), "E3+perm", generator=geodl_generator)
"""

from __future__ import annotations

import random
import sys
import zlib

import pytest

_DTYPES = ("float32", "float64")


def pytest_addoption(parser):
    group = parser.getgroup("geodl")
    group.addoption("--geodl-seed", type=int, default=0,
                    help="base seed of the geodl_seed fixture (each test adds a hash of its id)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken or missing torch must not break pytest for everyone
        return False


def pytest_collection_modifyitems(config, items):
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if cuda_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in cuda_items:
            item.add_marker(skip)


def _wants(metafunc, name: str) -> bool:
    """The test uses the fixture and does not parametrise it itself."""
    if name not in metafunc.fixturenames:
        return False
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        names = names.split(",") if isinstance(names, str) else names
        if name in (n.strip() for n in names):
            return False
    return True


def pytest_generate_tests(metafunc):
    if _wants(metafunc, "geodl_dtype"):
        metafunc.parametrize("geodl_dtype", _DTYPES, indirect=True, ids=list(_DTYPES))
    if _wants(metafunc, "geodl_device"):
        devs = ["cpu"] + (["cuda"] if _cuda_available() else [])
        metafunc.parametrize("geodl_device", devs, indirect=True, ids=devs)


def seed_for(nodeid: str, base: int = 0) -> int:
    """The seed ``geodl_seed`` uses for a test id: stable across runs and machines."""
    return (base + zlib.crc32(nodeid.encode())) % 2**31


@pytest.fixture
def geodl_seed(request) -> int:
    """Seed torch, ``random`` and numpy (if imported) deterministically for this test."""
    seed = seed_for(request.node.nodeid, request.config.getoption("--geodl-seed", 0) or 0)
    random.seed(seed)
    import torch

    torch.manual_seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    return seed


@pytest.fixture
def geodl_generator(geodl_seed):
    """A CPU ``torch.Generator`` seeded with :func:`geodl_seed`."""
    import torch

    return torch.Generator().manual_seed(geodl_seed)


@pytest.fixture
def geodl_dtype(request):
    """``torch.float32`` or ``torch.float64`` (the test runs once for each)."""
    import torch

    value = request.param
    return getattr(torch, value) if isinstance(value, str) else value


@pytest.fixture
def geodl_device(request) -> str:
    """``"cpu"``, and ``"cuda"`` when a CUDA device is present (the test runs once for each)."""
    return request.param
