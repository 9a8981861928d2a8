"""The README's code runs as written: its embedding snippet on the committed SqueezerFaceNet pick
and the ORL faces of the install, and docs/USING_MODELS.md's pruning snippets."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from facepruning import load_embedder
from facepruning.artifacts import read_json
from facepruning.models import load_model
from facepruning.project import project_root

ROOT = project_root(__file__)


def _python_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_embedding_snippet_runs_as_written_on_the_committed_pick(monkeypatch, capsys):
    # a fresh clone has the pick's files (committed by the pipeline), so this needs no make repro
    snippet = _python_block_after("## Use the models")
    assert len(snippet.strip().splitlines()) <= 7  # "a few lines"
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    d = namespace["d"]
    assert d.shape[0] == 3 and np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    similarity, same, other = capsys.readouterr().out.split()
    assert float(similarity) == pytest.approx(float(d[0] @ d[1]), abs=1e-5)
    assert same in ("True", "False") and other in ("True", "False")
    # the files are the pick that analysis.json describes, and both formats agree
    _, meta = load_model(ROOT / "models" / "squeezerfacenet.pt")
    pick = read_json(ROOT / "metrics" / "analysis.json")["squeezerfacenet"]
    assert {k: meta["pick"][k] for k in ("run", "step", "stage")} == {
        k: pick[k] for k in ("run", "step", "stage")
    }
    pt = load_embedder(ROOT / "models" / "squeezerfacenet.pt").embed(namespace["a"])
    assert float(np.abs(pt - d[:1]).max()) < 1e-5


def test_using_models_pruning_snippets_run_as_written(tmp_path, monkeypatch):
    """docs/USING_MODELS.md's "Pruning your own network": the one call, a user's criterion and
    the loop, one after the other in one namespace (at 64x64 instead of 224x224, for time)."""
    text = (ROOT / "docs" / "USING_MODELS.md").read_text(encoding="utf-8")
    section = text[text.index("## Pruning your own network") :]
    section = section[: section.index("### `channel_multiple`")]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace("224, 224", "64, 64"), "USING_MODELS.md", "exec"), namespace)
    report, result = namespace["report"], namespace["result"]
    assert report.parameters[1] < report.parameters[0] and report.importance == "FilterNorm"
    assert result.history[-1]["params"] < result.history[0]["params"]
    assert (tmp_path / "resnet18-pruned.pt").is_file()
    assert (tmp_path / "checkpoints" / "resnet18" / "last.pt").is_file()


def test_readme_prune_your_own_network_snippet_runs_as_written(capsys):
    snippet = _python_block_after("## Prune your own network")
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    report = namespace["report"]
    assert report.parameters[1] < report.parameters[0]
    assert "parameters" in capsys.readouterr().out
