"""Group names, group objects, kinds and symmetry declarations are validated where they are written
(issue 10 fuzz findings F06-F13): each case here was accepted, hung or crashed with an unrelated
error before."""

from __future__ import annotations

import time

import pytest
import torch

from geodl.groups import Symmetry, get_group, lonlat_to_xyz, parse_kind, random_input, register_kind, xyz_to_lonlat
from geodl.groups._group import Group


def test_huge_azimuth_table_is_refused_at_once():
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"^group: .*1000000000000 azimuth bins; at most 65536"):
        get_group("equirect:1000000000000")
    assert time.perf_counter() - t0 < 1.0
    assert get_group("azimuth:65536").name == "azimuth:65536"  # the limit itself is fine (not built yet)


@pytest.mark.parametrize("args, exc, match", [
    (("E4", False, False), ValueError, r"^geometric: unknown geometric group 'E4'"),
    ((3, False, False), TypeError, r"^geometric: expected a geometric group name"),
    (("", False, False), ValueError, r"^geometric: unknown"),
    ((None, False, False), ValueError, r"^geometric: a group needs"),
    (("SO3", 1, False), TypeError, r"^permutations: expected a bool"),
])
def test_group_constructor_validates(args, exc, match):
    with pytest.raises(exc, match=match):
        Group(*args)


def test_group_constructor_still_builds_valid_groups():
    assert Group("E3", True, False).name == "E3+perm"
    assert Group(None, True, False).name == "perm"
    assert Group("equirect:8", False, False).table.shape == (16, 3, 3)


@pytest.mark.parametrize("args, exc, match", [
    (("E4",), ValueError, r"^group: 'E4' has unknown"),
    (("SO3", {"pos": "bogus"}), ValueError, r"^in_kinds\['pos'\]: kind: unknown kind 'bogus'"),
    (("SO3", {}, 3), TypeError, r"^out_kinds: expected a kind string"),
    (("SO3", {}, ("scalar", "nope")), ValueError, r"^out_kinds\[1\]: kind: unknown kind 'nope'"),
    (("SO3", {"pos": 1}), TypeError, r"^in_kinds\['pos'\]: expected a kind string"),
])
def test_symmetry_declarations_are_validated(args, exc, match):
    with pytest.raises(exc, match=match):
        Symmetry(*args)


def test_valid_symmetry_declarations_still_work():
    s = Symmetry("E3+perm", {"pos": "node:points", "batch": "batch"}, {"e": "scalar", "f": "node:vectors"},
                 batch_arg="batch")
    assert s.group == "E3+perm"


@pytest.mark.parametrize("bad, exc, match", [
    (torch.tensor([[0, 1]]), TypeError, r"^lonlat: expected a floating-point tensor"),
    (torch.tensor([[0.0, 100.0]]), ValueError, r"^lonlat: latitudes"),
    (torch.zeros(2, 2, dtype=torch.complex64), TypeError, r"^lonlat: "),
    ("abc", TypeError, r"^lonlat: expected a torch.Tensor"),
    (torch.zeros(4, 3), ValueError, r"^lonlat: expected shape"),
])
def test_lonlat_to_xyz_validates(bad, exc, match):
    with pytest.raises(exc, match=match):
        lonlat_to_xyz(bad)


@pytest.mark.parametrize("bad, exc, match", [
    (torch.ones(4, 2), ValueError, r"^xyz: expected shape"),
    (torch.ones(4, 3, dtype=torch.long), TypeError, r"^xyz: expected a floating-point"),
    (torch.ones(4, 3, dtype=torch.complex64), TypeError, r"^xyz: "),
    (None, TypeError, r"^xyz: expected a torch.Tensor"),
])
def test_xyz_to_lonlat_validates(bad, exc, match):
    with pytest.raises(exc, match=match):
        xyz_to_lonlat(bad)


def test_coordinates_empty_and_round_trip():
    assert lonlat_to_xyz(torch.zeros(0, 2)).shape == (0, 3)
    ll = torch.tensor([[10.0, -30.0], [-170.0, 89.5]], dtype=torch.float64)
    torch.testing.assert_close(xyz_to_lonlat(lonlat_to_xyz(ll)), ll)


@pytest.mark.parametrize("kind, n, exc, match", [
    ("node:vectors", -1, ValueError, r"^n: "),
    ("node:points", "3", TypeError, r"^n: "),
    ("node:points", True, TypeError, r"^n: "),
])
def test_random_input_checks_n(kind, n, exc, match):
    with pytest.raises(exc, match=match):
        random_input(kind, n)


def test_random_input_checks_dim():
    with pytest.raises(ValueError, match=r"^dim: "):
        random_input("node:points", 3, dim=0)


@pytest.mark.parametrize("kind", ["sh:1000000000000", "so3:1000000000000", "node:sh:101"])
def test_huge_kind_degrees_are_refused(kind):
    with pytest.raises(ValueError, match=r"above the largest supported kind degree 100"):
        parse_kind(kind)
    assert parse_kind("sh:100").lmax == 100


def test_node_is_not_a_kind_name():
    with pytest.raises(ValueError, match=r"^name: 'node' is reserved"):
        register_kind("node", act=lambda s, g, x: x)


@pytest.mark.parametrize("kind", ["parts", "batch", "edge_index", "node:vectors", "sh:3"])
def test_random_input_checks_memory_before_allocating(kind):
    with pytest.raises(ValueError, match=r"^n: 1000000000000 asks for .* GiB of memory"):
        random_input(kind, 10**12)


def test_random_input_size_probe_leaves_the_generator_alone():
    a = random_input("node:vectors", 6, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    b = torch.randn((6, 3), generator=g, dtype=torch.float64)
    torch.testing.assert_close(a, b)
