"""``geodl check`` hardening: files with PyG ``MessagePassing`` models or dataclasses load, every
error that is not a verdict exits 2 with one line on stderr (``--traceback`` for the trace), and
``geodl --version``."""

import os
import subprocess
import sys
import textwrap

import pytest

import geodl
from geodl.cli import main

_MP_FILE = '''
import torch
from torch_geometric.nn import MessagePassing


class Displacement(MessagePassing):
    """Sum of the edge vectors into each node: rotates with the input, its norm is invariant."""

    def __init__(self, invariant=True):
        super().__init__(aggr="add")
        self.invariant = invariant

    def forward(self, pos, edge_index):
        out = self.propagate(edge_index, pos=pos)
        return out.norm(dim=-1, keepdim=True) if self.invariant else out[:, :1]

    def message(self, pos_i, pos_j):
        return pos_i - pos_j


def build():
    return Displacement()


def build_chiral():
    return Displacement(invariant=False)
'''

_DATACLASS_FILE = '''
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Config:
    scale: float = 2.0


class Model(torch.nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg

    def forward(self, pos):
        return self.cfg.scale * (pos - pos.mean(0)).norm(dim=-1).sum()


def build():
    return Model(Config())
'''

_BROKEN_FILE = '''
import torch


def build_raises():
    raise KeyError("no such layer")


def build_bad_call():
    return lambda pos: {}["missing"]


def build_shape_error():
    return lambda pos: pos @ torch.zeros(7, 7)


def build_not_a_model():
    return 3
'''


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _check(target, inputs="node:points", outputs="scalar", group="E3+perm", *extra):
    return main(["check", str(target), "--group", group, "--inputs", inputs, "--outputs", outputs,
                 "--n-points", "8", "--samples", "2", *extra])


def test_a_file_with_a_pyg_message_passing_model(tmp_path, capsys):
    pytest.importorskip("torch_geometric")
    path = _write(tmp_path, "cli_hardening_mp_models.py", _MP_FILE)
    assert _check(f"{path}:build", "node:points,edge_index", "node:scalar") == 0, capsys.readouterr()
    assert "PASSED" in capsys.readouterr().out
    # the same file, a model that is not invariant: a verdict (1), not an error (2)
    assert _check(f"{path}:build_chiral", "node:points,edge_index", "node:scalar") == 1
    assert "FAILED" in capsys.readouterr().out


def test_a_file_with_a_dataclass_and_postponed_annotations(tmp_path, capsys):
    path = _write(tmp_path, "cli_hardening_dc_models.py", _DATACLASS_FILE)
    assert _check(f"{path}:build") == 0, capsys.readouterr()
    assert "PASSED" in capsys.readouterr().out


def test_a_file_may_import_its_neighbours(tmp_path, capsys):
    _write(tmp_path, "cli_hardening_helpers.py", "def norm(p):\n    return (p - p.mean(0)).norm(dim=-1).sum()\n")
    path = _write(tmp_path, "cli_hardening_uses_helpers.py",
                  "from cli_hardening_helpers import norm\n\ndef build():\n    return norm\n")
    assert _check(f"{path}:build") == 0, capsys.readouterr()


def test_a_file_named_like_an_imported_module_does_not_replace_it(tmp_path, capsys):
    import json

    path = _write(tmp_path, "json.py",
                  "def build():\n    return lambda p: (p - p.mean(0)).norm(dim=-1).sum()\n")
    before = list(sys.path)
    assert _check(f"{path}:build") == 0, capsys.readouterr()
    assert sys.modules["json"] is json and json.dumps([1]) == "[1]"
    assert sys.path == before  # the file's folder (holding a json.py) does not stay on the path


def _one_line_error(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("geodl check: error: ")
    return lines[0]


@pytest.mark.parametrize("factory, words", [
    ("build_raises", ["building the model", "KeyError", "no such layer"]),
    ("build_bad_call", ["calling the model", "KeyError", "missing"]),
    ("build_shape_error", ["calling the model", "RuntimeError", "7x7"]),
    ("build_not_a_model", ["building the model", "int"]),
])
def test_model_errors_exit_2_with_one_line(tmp_path, capsys, factory, words):
    path = _write(tmp_path, f"cli_hardening_broken_{factory}.py", _BROKEN_FILE)
    assert _check(f"{path}:{factory}") == 2
    out = capsys.readouterr()
    line = _one_line_error(out.err)
    for w in words:
        assert w in line
    assert "PASSED" not in out.out and "FAILED" not in out.out


@pytest.mark.parametrize("source, words", [
    ("def build(:\n", ["importing", "SyntaxError"]),
    ("import geodl_no_such_dependency_xyz\n", ["importing", "ModuleNotFoundError", "geodl_no_such_dependency_xyz"]),
    ("raise AttributeError('broken at import')\n", ["importing", "AttributeError", "broken at import"]),
    ("import sys\nsys.exit(3)\n", ["importing", "SystemExit"]),
])
def test_import_errors_exit_2_with_one_line(tmp_path, capsys, source, words):
    path = _write(tmp_path, "cli_hardening_bad_import.py", source)
    assert _check(f"{path}:build") == 2
    line = _one_line_error(capsys.readouterr().err)
    for w in words:
        assert w in line
    assert "cli_hardening_bad_import" not in sys.modules  # a failed import leaves nothing behind


def test_traceback_flag_shows_the_trace(tmp_path, capsys):
    path = _write(tmp_path, "cli_hardening_broken_tb.py", _BROKEN_FILE)
    assert _check(f"{path}:build_bad_call", "node:points", "scalar", "E3+perm", "--traceback") == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "cli_hardening_broken_tb.py" in err and "_CheckError" not in err
    assert err.splitlines()[-1].startswith("geodl check: error: calling the model")


@pytest.mark.parametrize("flag, value", [("--n-points", "0"), ("--samples", "-1"), ("--rtol", "-1"),
                                         ("--atol", "nan"), ("--device", "gpu")])
def test_bad_check_options_exit_2_naming_the_option(capsys, flag, value):
    code = main(["check", "geodl.testing.examples:invariant_model", "--group", "SO3", "--inputs", "node:points",
                 "--outputs", "scalar", flag, value])
    assert code == 2
    assert flag in _one_line_error(capsys.readouterr().err)


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"geodl {geodl.__version__}"


def test_a_crashing_model_exits_2_as_a_process(tmp_path):
    # CI reads the exit status: a crash must not read as "not equivariant" (1)
    path = _write(tmp_path, "cli_hardening_crash.py", _BROKEN_FILE)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "geodl.cli", "check", f"{path}:build_bad_call", "--group", "O3",
                           "--inputs", "node:points", "--outputs", "scalar"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    _one_line_error(proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "geodl.cli", "--version"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == f"geodl {geodl.__version__}"
