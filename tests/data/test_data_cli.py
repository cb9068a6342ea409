"""``geodl data``: root, list, generate, verify."""

from __future__ import annotations

import torch

from geodl.cli import main
from geodl.data import DATASETS, cached_files


def test_root_and_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEODL_DATA", str(tmp_path))
    assert main(["data", "root"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)
    assert main(["data", "list"]) == 0
    assert "nothing cached" in capsys.readouterr().out
    (tmp_path / "nbody").mkdir()
    (tmp_path / "nbody" / "x.pt").write_bytes(b"0" * 2048)
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "nbody" in out and "2.0 KB" in out
    assert cached_files(tmp_path) == [("nbody", 1, 2048)]


def test_generate_then_verify_nbody_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEODL_DATA", str(tmp_path))
    assert main(["data", "verify", "nbody", "--quick"]) == 1
    assert "does not exist" in capsys.readouterr().out
    assert main(["data", "generate", "nbody", "--quick"]) == 0
    assert "700 trajectories" in capsys.readouterr().out
    path = DATASETS["nbody"].path(tmp_path, True, 0)
    assert path.exists() and path.parent == tmp_path / "nbody"
    assert main(["data", "verify", "nbody", "--quick"]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    # the file `geodl bench nbody --quick` reads is the one generated here
    from geodl.data import NBodyDataset

    assert len(NBodyDataset("val", sizes=(300, 200, 200))) == 200
    # a damaged file (wrong shapes) fails verification
    data = torch.load(path, weights_only=True)
    data["loc"] = data["loc"][:, :4]
    torch.save(data, path)
    assert main(["data", "verify", "nbody", "--quick"]) == 1
    assert "'loc'" in capsys.readouterr().out


def test_verify_landmask_in_repo_cache(capsys):
    # the repository cache (or GEODL_DATA) holds the land mask the land/ocean tests use
    from geodl.data import land_mask
    import torch as _t

    land_mask(_t.tensor([[0.0, 0.0]]))  # builds it when missing
    assert main(["data", "verify", "landmask"]) == 0
    assert "land mask" in capsys.readouterr().out


def test_unknown_dataset_is_an_argparse_error(capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["data", "verify", "imagenet"])
    assert "imagenet" in capsys.readouterr().err
