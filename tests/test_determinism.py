"""Same inputs, same bytes: a stage run twice writes byte-identical files, so DVC sees no change
and reruns nothing downstream (torch's archives once carried their temporary file name)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from facepruning.artifacts import read_json
from facepruning.stages import prepare


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_prepare_stage_run_twice_writes_identical_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths relative to a project folder, as in the pipeline
    common = {"raw_dir": "data/raw", "resize": 20, "image_size": 16}
    prepare.run(out_dir="first", **common)
    first = _digests(tmp_path / "first")
    assert {"images.pt", "manifest.csv", "dataset.json"} <= set(first)
    prepare.run(out_dir="first", **common)  # the same stage again, as `dvc repro -f prepare`
    assert _digests(tmp_path / "first") == first
    prepare.run(out_dir="second", **common)  # another output path: the same data
    second = _digests(tmp_path / "second")
    assert {k: v for k, v in second.items() if k != "dataset.json"} == {
        k: v for k, v in first.items() if k != "dataset.json"
    }
    info = [read_json(tmp_path / folder / "dataset.json") for folder in ("first", "second")]
    assert info[0]["parameters"].pop("out_dir") == "first"
    assert info[1]["parameters"].pop("out_dir") == "second"
    assert info[0] == info[1]
