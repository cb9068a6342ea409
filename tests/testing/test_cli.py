"""``geodl check``: exit 0 on pass, 1 on a failed check, 2 on a usage error; prints the table."""

import os
import subprocess
import sys

import pytest

from geodl.cli import main

EX = "geodl.testing.examples"


def _check(capsys, target, group, inputs="node:points", outputs="scalar", *extra):
    code = main(["check", f"{EX}:{target}", "--group", group, "--inputs", inputs, "--outputs", outputs,
                 "--n-points", "10", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("target, group, outputs, expected, failing", [
    ("invariant_model", "E3+perm", "scalar", 0, []),
    ("equivariant_model", "E3+perm", "node:vectors", 0, []),
    ("noninvariant_model", "E3+perm", "scalar", 1, ["reflection", "translation", "haar"]),
    ("chiral_model", "O3", "scalar", 1, ["reflection"]),
    ("chiral_model", "SE3+perm", "scalar", 0, []),
    ("icosahedral_model", "SO3", "scalar", 1, ["haar"]),
    ("icosahedral_model", "icosahedral", "scalar", 0, []),
    ("nonperm_model", "E3+perm", "node:scalar", 1, ["perm"]),
])
def test_examples_through_geodl_check(capsys, target, group, outputs, expected, failing):
    code, out, err = _check(capsys, target, group, "node:points", outputs)
    assert code == expected, out + err
    assert ("PASSED" in out) == (expected == 0)
    failed_rows = {line.split()[2] for line in out.splitlines() if line.endswith("FAIL")}
    assert set(failing) <= failed_rows and (expected == 1) == bool(failed_rows)


def test_float32_and_options(capsys):
    code, out, _ = _check(capsys, "invariant_model", "SE3", "node:points", "scalar", "--dtype", "float32",
                          "--samples", "2", "--seed", "3", "--no-structured")
    assert code == 0 and "dtype float32" in out and "rtol 1.00e-04" in out
    rows = [line for line in out.splitlines() if line.startswith("out ")]
    assert [r.split()[2:4] for r in rows] == [["haar", "2"]]


def test_a_model_from_a_file_with_two_outputs(tmp_path, capsys):
    path = tmp_path / "my_models.py"
    path.write_text(
        "import torch\n"
        "def build():\n"
        "    def model(pos, edge_index):\n"
        "        rel = pos[edge_index[0]] - pos[edge_index[1]]\n"
        "        force = torch.zeros_like(pos).index_add_(0, edge_index[1], rel)\n"
        "        return rel.norm(dim=-1).sum(), force\n"
        "    return model\n")
    code = main(["check", f"{path}:build", "--group", "E3+perm", "--inputs", "node:points,edge_index",
                 "--outputs", "scalar,node:vectors"])
    out = capsys.readouterr().out
    assert code == 0 and "out[0]" in out and "out[1]" in out
    code = main(["check", f"{path}:build", "--group", "E3+perm", "--inputs", "node:points,edge_index",
                 "--outputs", "scalar,node:scalar"])  # forces are not scalars
    assert code == 1


@pytest.mark.parametrize("argv, message", [
    (["nonexistent_module_xyz:f"], "nonexistent_module_xyz"),
    ([f"{EX}:no_such_factory"], "no_such_factory"),
    ([f"{EX}"], "MODULE:FACTORY"),
    ([f"{EX}:invariant_model", "--group", "SO4"], "group"),
    ([f"{EX}:invariant_model", "--inputs", "node:spinors"], "spinors"),
])
def test_usage_errors_exit_2(capsys, argv, message):
    defaults = {"--group": "SO3", "--inputs": "node:points", "--outputs": "scalar"}
    for flag, value in defaults.items():
        if flag not in argv:
            argv = argv + [flag, value]
    assert main(["check", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_required_option_exits_2(capsys):
    assert main(["check", f"{EX}:invariant_model", "--group", "SO3"]) == 2
    assert "--inputs" in capsys.readouterr().err


def test_exit_code_of_a_failed_check_as_a_subprocess():
    # one subprocess (torch's import dominates its cost); the in-process tests above cover exit 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "geodl.cli", "check", f"{EX}:chiral_model", "--group", "O3",
                           "--inputs", "node:points", "--outputs", "scalar", "--n-points", "8"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "reflection" in proc.stdout


def test_help_lists_every_registered_kind(capsys):
    from geodl.groups import kind_table

    assert main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    for name, _, doc in kind_table():
        assert name in out and doc[:20] in out
    for kind in ("so3:<lmax>", "rotation", "equirect:<H>x<W>", "image2d", "batch", "parts", "sh:<lmax>[:e3nn]"):
        assert kind in out


_PARTS_MODELS = '''
import torch

def part_centred():
    def fn(pos, labels):
        P = int(labels.max()) + 1
        sums = torch.zeros(P, pos.shape[1], dtype=pos.dtype).index_add_(0, labels, pos)
        counts = torch.bincount(labels, minlength=P).to(pos.dtype)[:, None]
        return pos - (sums / counts)[labels]
    return fn

def globally_centred():
    return lambda pos, labels: pos - pos.mean(0)

def d4_conv():
    k = torch.ones(3, 3, dtype=torch.float64)
    return lambda img: torch.nn.functional.conv2d(img[:, None], k[None, None].to(img.dtype), padding=1)[:, 0]

def equirect_blur():
    return lambda f: (f + f.roll(1, -1) + f.roll(-1, -1)) / 3
'''


@pytest.mark.parametrize("factory, group, inputs, outputs, expected", [
    ("part_centred", "E3^parts+perm", "node:points,parts", "node:vectors", 0),
    ("globally_centred", "E3^parts", "node:points,parts", "node:vectors", 1),
    ("d4_conv", "D4", "image2d", "image2d", 0),
    ("equirect_blur", "equirect", "equirect:4x8", "equirect:4x8", 0),
    ("equirect_blur", "SO3", "equirect:4x8", "equirect:4x8", 2),  # not whole-bin rolls: usage error
])
def test_new_groups_through_geodl_check(tmp_path, capsys, factory, group, inputs, outputs, expected):
    path = tmp_path / "parts_models.py"
    path.write_text(_PARTS_MODELS)
    code = main(["check", f"{path}:{factory}", "--group", group, "--inputs", inputs, "--outputs", outputs,
                 "--n-points", "9"])
    out = capsys.readouterr()
    assert code == expected, out.out + out.err
