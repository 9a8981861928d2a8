"""The manifest's schema and its reader: what every stage needs to find the prepared images.

``manifest.csv`` has one row per image: ``index`` (row number = position in the image cache),
``path`` (relative to ``dataset.json``'s ``data_root``), ``identity``, ``label`` (training class,
-1 for test identities) and ``split`` (``train``, ``val``, ``test``), plus ``pose`` and
``template`` for the VGGFace2 pose protocol and the face box columns when a box file was given.
The writer lives in :mod:`facepruning.prepare`; only reading is needed to train and evaluate.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import DataError

__all__ = ["SPLITS", "MANIFEST_COLUMNS", "BOX_COLUMNS", "BOX_LINE_COLUMN", "read_manifest"]

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_COLUMNS: tuple[str, ...] = ("index", "path", "identity", "label", "split")
BOX_COLUMNS: tuple[str, ...] = ("box_x", "box_y", "box_w", "box_h")
# The line of the box file each box came from, so a bad box can be traced back to its source.
BOX_LINE_COLUMN = "box_line"


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``manifest.csv`` (or the one inside the folder ``path``) with stable dtypes."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: run the prepare stage (dvc repro prepare) or notebook "
            "01_data_preparation first"
        )
    # Identities such as "0001" or "NA" must stay strings, not become numbers or NaN.
    text = {"path": str, "identity": str, "split": str, "pose": str}
    manifest = pd.read_csv(path, dtype=text, keep_default_na=False)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{path} lacks the columns {missing}; re-run the prepare stage")
    return manifest
