"""The README's code runs as written: its five-line embedding snippet, on a stand-in model and
images in a scratch folder laid out like the repository."""

from __future__ import annotations

import re

import numpy as np
import torch
from PIL import Image

from facepruning.models import build_model
from facepruning.project import project_root
from facepruning.pruning import save_model

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
