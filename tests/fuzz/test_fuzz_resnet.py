"""Fuzz of the resnet entries (registered with ``@fuzz`` in this file)."""

from __future__ import annotations

import pytest

from ._harness import HUGE, REGISTRY, Mut, cases, check_entry, close, expect, finite, fuzz, st, tensor_muts, values, with_cases  # noqa: F401

S = st()


NAMES = sorted(n for n, e in REGISTRY.items() if e.builder.split(":")[0].endswith("test_fuzz_resnet"))


@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name):
    check_entry(name)
