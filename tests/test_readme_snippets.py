"""The README's code runs as written: its five-line embedding snippet, on a stand-in model and
images in a scratch folder laid out like the repository."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from facepruning.models import build_model, save_model
from facepruning.project import project_root

ROOT = project_root(__file__)


def _python_block_after(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_embedding_snippet_runs_as_written(tmp_path, monkeypatch):
    snippet = _python_block_after("## Use the models")
    assert len(snippet.strip().splitlines()) <= 6  # "in five lines" (and a blank one)
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model = build_model("squeezenet", num_classes=5).eval()
    meta = {
        "arch": "squeezenet",
        "num_classes": 5,
        "image_size": 32,
        "resize": 36,
        "channels": 1,
        "pixel_mean": [118.0] * 3,
        "pixel_std": [45.0] * 3,
        "eer_threshold": 0.5,
    }
    save_model("models/pruned/squeezenet-taylor_activation.pt", model, meta=meta)
    rng = np.random.default_rng(0)
    for name in ("alice_1", "alice_2", "bob"):
        pixels = rng.integers(0, 256, size=(48, 40), dtype=np.uint8)
        Image.fromarray(pixels).save(f"{name}.jpg")
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    d = namespace["d"]
    assert d.shape[0] == 3 and np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    face = namespace["face"]
    assert isinstance(face.verify("alice_1.jpg", "bob.jpg"), bool)
    assert abs(face.similarity("alice_1.jpg", "alice_1.jpg") - 1) < 1e-5


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
