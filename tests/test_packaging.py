"""Packaging honesty: hard dependencies are what geodl imports, extras are imported lazily with a
``pip install`` hint, and nothing in the library or its docs cites files outside the project."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "geodl"

# import name -> distribution name in pyproject's [project] dependencies
HARD = {"torch": "torch", "torch_geometric": "torch-geometric", "e3nn": "e3nn", "healpy": "healpy",
        "roma": "roma", "numpy": "numpy", "tqdm": "tqdm"}


def _pyproject_dependencies() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    return {re.split(r"[<>=!~\[ ]", s.strip().strip('"'))[0] for s in block.split(",") if s.strip()}


def _imports(path: Path):
    """(module top-level name, is at module level) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            top_level.add(id(sub))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for n in names:
            yield n, id(node) in top_level


def _third_party(name: str) -> bool:
    top = name.split(".")[0]
    return top not in sys.stdlib_module_names and top not in ("geodl", "__future__")


def test_hard_dependencies_are_exactly_pyproject_dependencies():
    assert _pyproject_dependencies() == set(HARD.values())


def test_every_import_is_a_hard_dependency_or_a_declared_lazy_extra():
    from geodl._optional import EXTRAS

    extras = {k.split(".")[0] for k in EXTRAS}
    bad_eager, unknown = [], []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT)
        for name, eager in _imports(path):
            if not _third_party(name):
                continue
            top = name.split(".")[0]
            if top in HARD:
                continue
            if top not in extras:
                unknown.append(f"{rel}: {name}")
            elif eager and not path.name.startswith("_triton") and path.name != "pytest_plugin.py" \
                    and path.name != "strategies.py":
                # Triton kernel modules are imported only after the back-end probe found triton;
                # the pytest plugin and hypothesis strategies are test-extra modules by nature.
                bad_eager.append(f"{rel}: {name}")
    assert not unknown, f"imports of packages that are neither hard dependencies nor extras: {unknown}"
    assert not bad_eager, f"extras imported at module level (import them lazily via geodl._optional.require): {bad_eager}"


def test_require_names_the_pip_install():
    from geodl._optional import require

    with pytest.raises(ImportError, match=r"pip install global-land-mask.*geodl\[bench\]"):
        require("global_land_mask.__no_such_module__", "landocean")


def test_no_citation_of_files_outside_the_project():
    pattern = re.compile(r"\.\./shared|shared/[A-Z]+\.md|\b(DESIGN|NUMERICS|BENCHMARKS|LAYOUT|STYLE)\.md|/work/")
    hits = []
    for path in [*PKG.rglob("*.py"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md"]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()[:80]}")
    assert not hits, "cites files users do not have:\n" + "\n".join(hits)
