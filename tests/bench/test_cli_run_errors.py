"""``geodl bench``: a ValueError/TypeError met during a run (a bad checkpoint, cache or size) is one
line on stderr with exit code 2, not a traceback; ``--traceback`` re-raises it."""

from __future__ import annotations

import pytest

import geodl.bench as bench
from geodl import cli


def _raising(argv):
    raise ValueError("checkpoint /tmp/x/last.pt: truncated file (--run-dir /tmp/x)")


def test_run_error_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(bench, "_entry", lambda name: _raising)
    assert cli.main(["bench", "nbody", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("geodl bench nbody: error: checkpoint /tmp/x/last.pt: truncated file")
    assert "Traceback" not in err and err.count("\n") == 1


def test_traceback_flag_reraises(monkeypatch):
    seen = {}

    def entry(argv):
        seen["argv"] = argv
        _raising(argv)

    monkeypatch.setattr(bench, "_entry", lambda name: entry)
    with pytest.raises(ValueError, match="truncated file"):
        cli.main(["bench", "nbody", "--quick", "--traceback"])
    assert seen["argv"] == ["--quick"]  # the flag is the CLI's, not the task's
