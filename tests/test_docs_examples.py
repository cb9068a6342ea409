"""The examples of README.md and docs/*.md run as written.

Every fenced ``python`` block runs; the blocks of one file share a namespace, in order (a later
block may use names of an earlier one), in a temporary working directory. A block right after an
HTML comment ``<!-- no-run: reason -->`` is not run and is reported as skipped with that reason
(for blocks that need a GPU or a real dataset folder only). The ``geodl`` command lines of the
``bash`` blocks that are cheap (``check``, ``info``, ``--version``, ``data root``/``list``/``verify``
and every ``--help``) run through :func:`geodl.cli.main` and must exit 0, or 1 where the line's
comment says ``exit 1`` / ``exits 1``; the others (training runs, downloads) are not run here.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
_NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<reason>.*?)\s*-->")
_CHEAP = (("check",), ("info",), ("--version",), ("data", "root"), ("data", "list"), ("data", "verify"))


def blocks(page: Path, lang: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, no-run reason or None)`` of each ``lang`` block of ``page`` (1-based line of
    the first code line; the reason comes from a marker on one of the two lines above the fence)."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        start, indent, block_lang = i, m.group(1), m.group(2)
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if block_lang != lang:
            continue
        marker = _NO_RUN.search("\n".join(lines[max(0, start - 2):start]))
        out.append((start + 2, "\n".join(body) + "\n", marker.group("reason") if marker else None))
    return out


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


PY_PAGES = [p for p in PAGES if blocks(p, "python")]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("page", PY_PAGES, ids=_rel)
def test_python_blocks_run(page, sandbox, capsys, monkeypatch):
    import sys
    import types

    # a real module for the page, as a user's script has: PyG's MessagePassing inspects the class's module
    mod = types.ModuleType(f"docs_{page.stem}", f"The examples of {_rel(page)}.")
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    namespace = mod.__dict__
    ran = 0
    for line, code, reason in blocks(page, "python"):
        if reason is not None:
            continue
        try:
            exec(compile(code, f"{_rel(page)}:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{_rel(page)}, python block at line {line} failed: {type(e).__name__}: {e}") from e
        ran += 1
    assert ran > 0


SKIPPED = [(p, line, reason) for p in PAGES for line, _, reason in blocks(p, "python") if reason is not None]

if SKIPPED:  # no marker today; each one shows up as a skip with its reason

    @pytest.mark.parametrize("page,line,reason", SKIPPED, ids=[f"{_rel(p)}:{n}" for p, n, _ in SKIPPED])
    def test_blocks_marked_no_run(page, line, reason):
        assert reason, f"{_rel(page)}:{line}: a no-run marker needs a reason"
        pytest.skip(f"{_rel(page)}:{line} not run: {reason}")


def _commands():
    out = []
    for page in PAGES:
        for line, code, reason in blocks(page, "bash") + blocks(page, "sh") + blocks(page, "console"):
            if reason is not None:
                continue
            for k, raw in enumerate(code.replace("\\\n", " ").splitlines()):
                cmd = raw.strip().removeprefix("$ ")
                if not cmd.startswith("geodl "):
                    continue
                command, _, comment = cmd.partition("#")
                argv = shlex.split(command)[1:]
                if any(re.match(r"^[\w./-]+\.py:", a) and not (ROOT / a.split(":")[0]).exists() for a in argv):
                    continue  # a user's own file, shown as an illustration
                if "--help" in argv or "-h" in argv or any(tuple(argv[:len(c)]) == c for c in _CHEAP):
                    out.append((page, line + k, argv, 1 if re.search(r"\bexits? 1\b", comment) else 0))
    return out


COMMANDS = _commands()


@pytest.mark.parametrize("page,line,argv,code", COMMANDS, ids=[f"{_rel(p)}:{n}" for p, n, _, _ in COMMANDS])
def test_geodl_commands_exit_as_documented(page, line, argv, code, sandbox, capsys):
    from geodl.cli import main

    try:
        got = main(argv)
    except SystemExit as e:  # argparse's --help
        got = e.code or 0
    assert got == code, f"{_rel(page)}:{line}: geodl {shlex.join(argv)} exited {got}, expected {code}"


def test_pages_have_examples():
    """The extraction finds the blocks (a changed fence style would silently run nothing)."""
    assert len(PY_PAGES) >= 6 and sum(len(blocks(p, "python")) for p in PAGES) >= 15
    assert len(COMMANDS) >= 2
