"""Fuzz of the vinet bench task (entries registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import REGISTRY, check_entry

NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_vinet_bench"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
