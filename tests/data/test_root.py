"""The data home: ``$GEODL_DATA``, else a root set in code, else the user cache; never the package's path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import geodl
from geodl.data import default_root, set_root

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("GEODL_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    yield monkeypatch
    set_root(None)


def test_order_env_then_code_then_user_cache(clean_env, tmp_path):
    clean_env.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "geodl"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "geodl"
    set_root(tmp_path / "code")
    assert default_root() == tmp_path / "code"
    clean_env.setenv("GEODL_DATA", str(tmp_path / "env"))  # read on every call
    assert default_root() == tmp_path / "env"
    clean_env.delenv("GEODL_DATA")
    set_root(None)
    assert default_root() == tmp_path / "xdg" / "geodl"
    with pytest.raises(TypeError, match="path"):
        set_root(3)


def test_default_is_outside_the_package(clean_env):
    pkg = Path(geodl.__file__).resolve().parents[1]
    assert pkg not in default_root().resolve().parents


_PROBE = """
import os, sys, pathlib
import geodl, geodl.data
root = geodl.data.default_root()
pkg = pathlib.Path(geodl.__file__).resolve().parent
print(pkg)
print(root)
print(pkg.parent in root.resolve().parents or root.resolve() == pkg.parent)
"""


def test_non_editable_install_keeps_data_outside_site_packages(tmp_path):
    # a copy of the sources (so the build leaves nothing in the checkout), installed with pip
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "geodl", src / "geodl", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "--target", str(target), str(src)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (target / "geodl" / "data" / "_root.py").exists()

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("GEODL_DATA", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), HOME=str(home))
    probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr[-3000:]
    pkg, root, inside = probe.stdout.split("\n")[:3]
    assert Path(pkg) == (target / "geodl").resolve()  # the installed copy, not the checkout
    assert inside == "False"
    assert Path(root) == home / ".cache" / "geodl"

    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert Path(probe.stdout.split("\n")[1]) == tmp_path / "xdg" / "geodl"

    env["GEODL_DATA"] = str(tmp_path / "mine")
    probe = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert Path(probe.stdout.split("\n")[1]) == tmp_path / "mine"
