"""facepruning: Taylor-score filter pruning of face-recognition CNNs.

The open, runnable companion to
- "SqueezerFaceNet: Reducing a Small Face Recognition CNN Even More Via Filter Pruning"
  (Alonso-Fernandez et al., arXiv 2307.10697), and
- "Deep Network Pruning: A Comparative Study on CNNs in Face Recognition"
  (Alonso-Fernandez et al., arXiv 2405.18302).

Subpackages by concern, each re-exporting its public names: ``data`` reads prepared data (the
manifest, image decoding, datasets and transforms); ``prepare`` writes it (sources, protocols,
the identity split, the image cache); ``models`` builds the backbones, one file per
architecture; ``pruning`` is the method (``scoring`` ranks filters, ``surgery`` removes them,
``loop`` runs the iterative loop); ``stages`` are the pipeline's steps, one module per stage.
Single modules: ``parameters`` declares every stage's parameters once; ``training``,
``verification`` and ``distributed`` train, measure and spread the work; ``analysis`` and
``plots`` report; ``reference`` holds the notebooks' regression bounds; ``artifacts`` writes
files atomically and byte-deterministically; ``project`` runs notebooks; ``cli`` is
``python -m facepruning``. docs/ARCHITECTURE.md has the map.

The public face, importable from here (each loads its module on first use, so ``import
facepruning`` stays light): ``prune`` (any network, one call), ``prune_iteratively`` (the papers'
loop, any network), ``Importance`` (the base of the criteria), ``save_pruned`` / ``load_pruned``
(any pruned network), ``build_model``, ``save_model``, ``load_model`` (the face networks),
``export_onnx`` (``export``) and ``load_embedder`` (``embedder``); docs/USING_MODELS.md shows
them at work.
"""

import importlib
from typing import Any

from . import messages  # noqa: F401  (the package logger's stderr handler: messages show anywhere)

__version__ = "0.1.0"

# name -> module (relative, as a string: loaded on first access, so importing the package does
# not import torch, and the pipeline's import-closure check does not see these modules)
_PUBLIC = {
    "build_model": "models",
    "save_model": "models",
    "load_model": "models",
    "save_pruned": "models",
    "load_pruned": "models",
    "prune": "pruning",
    "prune_iteratively": "pruning",
    "Importance": "pruning",
    "export_onnx": "export",
    "load_embedder": "embedder",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
