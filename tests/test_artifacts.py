"""Written files: the same content gives the same bytes, and an unreadable file names the fix."""

import hashlib

import pandas as pd
import pytest
import torch

from facepruning import artifacts
from facepruning.errors import ArtifactError, FacePruningError
from facepruning.models import build_model, load_model, save_model


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_save_torch_gives_the_same_bytes_for_the_same_object(tmp_path):
    g = torch.Generator().manual_seed(0)
    obj = {
        "images": torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8, generator=g),
        "labels": torch.arange(5),
        "meta": {"name": "x", "sizes": [1, 2]},
    }
    artifacts.save_torch(tmp_path / "a" / "images.pt", obj)
    artifacts.save_torch(tmp_path / "b" / "other-name.pt", obj)
    assert _md5(tmp_path / "a" / "images.pt") == _md5(tmp_path / "b" / "other-name.pt")
    loaded = artifacts.load_torch(tmp_path / "a" / "images.pt")
    assert torch.equal(loaded["images"], obj["images"]) and loaded["meta"] == obj["meta"]
    assert not list(tmp_path.rglob("*.partial"))  # no temporary file left behind


def test_save_model_gives_the_same_bytes_for_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("squeezenet", num_classes=4)
    save_model(tmp_path / "one.pt", model, meta={"step": 1, "history": [{"a": 0.5}]})
    save_model(tmp_path / "sub" / "two.pt", model, meta={"step": 1, "history": [{"a": 0.5}]})
    assert _md5(tmp_path / "one.pt") == _md5(tmp_path / "sub" / "two.pt")


def test_write_csv_gives_the_same_bytes_with_unix_line_ends(tmp_path):
    frame = pd.DataFrame(
        {"step": [0, 1, 2], "loss": [1.5, 0.25, float("nan")], "name": list("abc")}
    )
    artifacts.write_csv(tmp_path / "a.csv", frame, index=False)
    artifacts.write_csv(tmp_path / "b" / "c.csv", frame, index=False)
    data = (tmp_path / "a.csv").read_bytes()
    assert data == (tmp_path / "b" / "c.csv").read_bytes()
    assert b"\r" not in data and data.startswith(b"step,loss,name\n0,1.5,a\n")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a.csv"), frame)


@pytest.mark.parametrize("keep", [0, 10, 200, -30])
def test_truncated_torch_file_raises_one_line_naming_file_and_fix(tmp_path, keep):
    path = tmp_path / "images.pt"
    artifacts.save_torch(path, {"images": torch.zeros(50, 1, 16, 16), "labels": torch.arange(50)})
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(ArtifactError) as info:
        artifacts.load_torch(path, remedy="the prepare stage")
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and "truncated or corrupt" in message
    assert "delete it and rerun the prepare stage" in message
    assert isinstance(info.value, FacePruningError) and isinstance(info.value, ValueError)


def test_missing_torch_file_is_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        artifacts.load_torch(tmp_path / "nothing.pt")


def test_truncated_model_file_raises_artifact_error(tmp_path):
    model = build_model("squeezenet", num_classes=4)
    path = tmp_path / "model.pt"
    save_model(path, model, meta={})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupt.*delete it"):
        load_model(path)


def test_identity_changes_names_dotted_keys():
    old = {"arch": "squeezenet", "config": {"lr": 0.01, "seed": 0, "levels": [1, 2]}, "gone": 1}
    new = {"arch": "squeezenet", "config": {"lr": 0.02, "seed": 0, "levels": [1, 3]}, "new": None}
    assert artifacts.identity_changes(old, new) == [
        "config.levels: [1, 2] -> [1, 3]",
        "config.lr: 0.01 -> 0.02",
        "gone: 1 -> (absent)",
        "new: (absent) -> null",
    ]
    assert artifacts.identity_changes(old, old) == []


def test_checkpoint_of_another_run_is_moved_aside_never_overwritten(tmp_path, capsys):
    path = tmp_path / "last.pt"
    old = {"seed": 1}
    for content in (b"first", b"second"):  # the same old run set aside twice
        path.write_bytes(content)
        stored = {"fingerprint": artifacts.fingerprint(old), "run_identity": old}
        assert not artifacts.belongs_to_run(path, stored, {"seed": 2})
        assert not path.exists()
    fp = artifacts.fingerprint(old)
    assert (tmp_path / f"last.{fp}.pt").read_bytes() == b"first"
    assert (tmp_path / f"last.{fp}.1.pt").read_bytes() == b"second"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all("seed: 1 -> 2" in line for line in lines)
    path.write_bytes(b"mine")
    assert artifacts.belongs_to_run(path, {"fingerprint": artifacts.fingerprint(old)}, old)
    assert path.read_bytes() == b"mine"


def test_equal_values_give_equal_bytes_whatever_storage_they_share(tmp_path):
    # a resumed run's tensors come from a checkpoint, an uninterrupted run's may be views of a
    # bigger tensor: the scores file must not tell them apart
    whole = torch.arange(12.0).reshape(3, 4)
    artifacts.save_torch(tmp_path / "view.pt", {"row": whole[1], "rows": [whole[0], whole[2]]})
    alone = {"row": torch.tensor([4.0, 5, 6, 7]), "rows": [torch.arange(4.0), whole[2].clone()]}
    artifacts.save_torch(tmp_path / "alone.pt", alone)
    assert (tmp_path / "view.pt").read_bytes() == (tmp_path / "alone.pt").read_bytes()
