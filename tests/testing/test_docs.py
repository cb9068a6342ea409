"""The guide docs/testing.md runs as written: its Python blocks and its `geodl check` lines."""

import re
import shlex
from pathlib import Path

import pytest

from geodl.cli import main

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", GUIDE.read_text(), flags=re.S)


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_blocks_run(index, capsys):
    exec(compile(_blocks("python")[index], f"{GUIDE.name}[python {index}]", "exec"), {"__name__": "guide"})


def test_check_commands_exit_as_documented(capsys):
    lines = [ln for block in _blocks("bash") for ln in block.splitlines()
             if ln.startswith("geodl check geodl.testing.examples:")]
    assert len(lines) >= 2
    for line in lines:
        command, _, comment = line.partition("#")
        argv = shlex.split(command)[1:]
        assert main(argv) == (1 if "exits 1" in comment else 0), line
