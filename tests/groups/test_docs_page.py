"""docs/groups.md runs as written."""

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "groups.md"


def test_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}[python {i}]", "exec"), {"__name__": "docs"})
    assert "reflection" in capsys.readouterr().out
