"""``geodl bench landocean`` / ``checkerboard`` in --quick mode: every combination, files written."""

import json

import pytest

from geodl.bench import TASKS, run_task
from geodl.nn.location import ENCODERS, NETWORKS


@pytest.mark.parametrize("task", ["landocean", "checkerboard"])
def test_quick_run_writes_every_combination(task, tmp_path, capsys):
    out, img = tmp_path / "res", tmp_path / "img"
    assert task in TASKS
    assert run_task(task, ["--quick", "--out", str(out), "--img-dir", str(img),
                           "--run-dir", str(tmp_path / "runs"), "--no-progress"]) == 0
    doc = json.loads((out / f"{task}.json").read_text())
    combos = {(r["encoder"], r["network"]) for r in doc["rows"]}
    assert combos == {(e, n) for e in ENCODERS for n in NETWORKS}
    chance = 0.5 if task == "landocean" else 1 / 16
    for r in doc["rows"]:
        assert 0.0 <= r["test_acc"] <= 1.0 and r["params"] > 0
    # 2 epochs on 400 points: still, the best model must beat chance on the test set
    assert max(r["test_acc"] for r in doc["rows"]) > chance
    assert (out / f"{task}.csv").read_text().splitlines()[0].startswith("encoder,network")
    for p in (img / f"{task}_map.png", out / f"{task}_map.png"):
        assert p.stat().st_size > 1000
    assert "environment" in doc and doc["quick"] is True
    assert "best:" in capsys.readouterr().out


def test_bad_arguments(tmp_path, capsys):  # rejected by the parser: exit status 2, the option named
    with pytest.raises(SystemExit) as exc:
        run_task("landocean", ["--quick", "--encoders", "nope", "--out", str(tmp_path), "--run-dir", str(tmp_path)])
    assert exc.value.code == 2 and "--encoders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        run_task("checkerboard", ["--quick", "--networks", "mlp", "--out", str(tmp_path), "--run-dir", str(tmp_path)])
    assert exc.value.code == 2 and "--networks" in capsys.readouterr().err
