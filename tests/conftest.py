"""Suite-wide settings: every test is seeded deterministically (the ``geodl_seed`` fixture of the
geodl pytest plugin, keyed on the test id), and hypothesis has no per-example deadline (the suite
runs on shared, loaded machines where timings are noise)."""

import pytest

try:
    from hypothesis import settings

    settings.register_profile("geodl", deadline=None)
    settings.load_profile("geodl")
except ImportError:  # hypothesis is in the `test` extra
    pass


@pytest.fixture(autouse=True)
def _seed_every_test(geodl_seed):
    return geodl_seed
