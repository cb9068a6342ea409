"""Cached datasets are validated, not trusted: a cache file that does not load (truncated,
garbage) or has the wrong keys, shapes, dtypes or values is regenerated with a RuntimeWarning
that names the file and says how to rebuild it by hand."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from geodl.data import NBodyDataset
from geodl.data import _nbody, _sphere

SIZES = (4, 3, 2)
SMALL = dict(frame_in=1, frame_out=2, sample_freq=5)


def _path(root):
    return _nbody._cache_path(root, 0, SIZES, SMALL)


def _fresh(root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a valid (or absent) cache gives no warning
        return {s: NBodyDataset(s, root=root, sizes=SIZES, **SMALL).tensors() for s in ("train", "val", "test")}


def _bad_tensors(which):
    good = _nbody.generate_nbody(sum(SIZES), seed=0, **SMALL)
    if which == "wrong_n":  # e.g. a cache of another size under this name: used to give an empty val split
        return {k: t[:4] for k, t in good.items()}
    if which == "wrong_dtype":
        return {k: t.float() for k, t in good.items()}
    if which == "wrong_particles":
        return {k: t[:, :3] for k, t in good.items()}
    if which == "missing_key":
        return {k: t for k, t in good.items() if k != "target"}
    if which == "nan":
        good["target"][1, 2, 0] = float("nan")
        return good
    if which == "charges":
        good["charges"] *= 0.5
        return good
    if which == "extra_key":
        return {**good, "junk": torch.zeros(1)}
    if which == "not_a_dict":
        return [good["loc"]]
    raise AssertionError(which)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong_n", "wrong_dtype",
                                    "wrong_particles", "missing_key", "extra_key", "nan", "charges",
                                    "not_a_dict"])
def test_a_bad_nbody_cache_is_regenerated_with_a_warning(tmp_path, damage):
    expected = _fresh(tmp_path / "ref")
    path = _path(tmp_path / "bad")
    path.parent.mkdir(parents=True)
    if damage in ("truncated", "garbage", "empty"):
        raw = _path(tmp_path / "ref").read_bytes()
        path.write_bytes({"truncated": raw[: len(raw) // 2], "garbage": b"not a tensor file\n" * 40,
                          "empty": b""}[damage])
    else:
        torch.save(_bad_tensors(damage), path)
    with pytest.warns(RuntimeWarning, match="regenerating it") as rec:
        got = {s: NBodyDataset(s, root=tmp_path / "bad", sizes=SIZES, **SMALL).tensors()
               for s in ("train", "val", "test")}
    msg = str(rec[0].message)
    assert str(path) in msg and "geodl data generate nbody" in msg and "delete it" in msg, msg
    for s in expected:
        assert len(got[s][0]) == len(expected[s][0]) > 0
        assert all(torch.equal(a, b) for a, b in zip(got[s], expected[s]))
    _fresh(tmp_path / "bad")  # the regenerated file is valid: no second warning


def test_a_valid_nbody_cache_is_read_not_regenerated(tmp_path, monkeypatch):
    _fresh(tmp_path)
    monkeypatch.setattr(_nbody, "generate_nbody", lambda *a, **k: pytest.fail("regenerated"))
    assert len(_fresh(tmp_path)["val"][0]) == SIZES[1]


def test_cache_problem_reasons():
    n = sum(SIZES)
    good = _nbody.generate_nbody(n, seed=0, **SMALL)
    assert _nbody._cache_problem(good, n, 5) is None
    assert "shape (9, 5, 3)" in _nbody._cache_problem(_bad_tensors("wrong_n"), n, 5)
    assert "float64" in _nbody._cache_problem(_bad_tensors("wrong_dtype"), n, 5)
    assert "non-finite" in _nbody._cache_problem(_bad_tensors("nan"), n, 5)


# the land-mask cache: a small fake mask stands in for the 117 MB GLOBE copy


def _write_fake_land(root, bits_path, meta_path, rows=4, cols=16):
    root.mkdir(parents=True, exist_ok=True)
    bits = np.packbits(np.eye(rows, cols, dtype=bool), axis=1)
    with open(bits_path, "wb") as fh:
        np.save(fh, bits, allow_pickle=False)
    meta = {"lat": [90.0, -45.0, -90.0, 90.0], "lon": [-180.0, 22.5, -180.0, 180.0],
            "shape": [rows, cols]}
    meta_path.write_text(json.dumps(meta))


@pytest.fixture
def fake_builder(monkeypatch):
    calls = []

    def build(root, bits_path, meta_path):
        calls.append(bits_path)
        _write_fake_land(root, bits_path, meta_path)

    monkeypatch.setattr(_sphere, "_build_land_bits", build)
    return calls


def test_a_valid_land_cache_is_reused(tmp_path, fake_builder):
    bits, meta = _sphere._land_bits(tmp_path)
    assert bits.shape == (4, 2) and len(fake_builder) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bits2, _ = _sphere._land_bits(tmp_path)
    assert np.array_equal(bits, bits2) and len(fake_builder) == 1


@pytest.mark.parametrize("damage", ["garbage_bits", "truncated_bits", "wrong_shape", "wrong_dtype",
                                    "garbage_meta", "meta_without_shape", "pickled_object"])
def test_a_bad_land_cache_is_rebuilt_with_a_warning(tmp_path, fake_builder, damage):
    root = tmp_path / "global_land_mask"
    bits_path, meta_path = root / "land_bits.npy", root / "land_bits.json"
    _write_fake_land(root, bits_path, meta_path)
    if damage == "garbage_bits":
        bits_path.write_bytes(b"garbage" * 10)
    elif damage == "truncated_bits":
        bits_path.write_bytes(bits_path.read_bytes()[:100])
    elif damage == "wrong_shape":
        np.save(bits_path, np.zeros((3, 2), np.uint8))
    elif damage == "wrong_dtype":
        np.save(bits_path, np.zeros((4, 2), np.int64))
    elif damage == "garbage_meta":
        meta_path.write_text("{not json")
    elif damage == "meta_without_shape":
        meta_path.write_text(json.dumps({"lat": [0, 1, 0, 1], "lon": [0, 1, 0, 1]}))
    elif damage == "pickled_object":
        np.save(bits_path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.warns(RuntimeWarning, match="rebuilding it") as rec:
        bits, meta = _sphere._land_bits(tmp_path)
    msg = str(rec[0].message)
    assert str(bits_path) in msg and "geodl data generate landmask" in msg, msg
    assert len(fake_builder) == 1 and bits.shape == (4, 2) and meta["shape"] == [4, 16]
