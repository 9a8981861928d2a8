"""What the stages share: validated parameters, the prepared data with its transforms, and
evaluation of a network on it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import artifacts
from ..data import BatchTransform, FaceDataset, PreparedData, load_prepared
from ..training import evaluate_face_model
from ..verification import eer_threshold

__all__ = [
    "threshold_of",
    "StageData",
    "training_data",
    "evaluate",
    "data_identity",
    "data_fingerprint",
    "fold_of",
    "claimed",
]


@dataclass
class StageData:
    """The prepared data, its three splits and the batch transforms a stage uses."""

    data: PreparedData
    train_set: FaceDataset
    val_set: FaceDataset
    test_set: FaceDataset
    train_transform: BatchTransform
    eval_transform: BatchTransform
    image_size: int
    pixel_mean: list[float]
    pixel_std: list[float]


def _as_list(values) -> list[float]:
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    return [float(v) for v in t.tolist()]


def training_data(
    data_dir: str | Path,
    *,
    pixel_mean: Sequence[float] | float | None = None,
    pixel_std: Sequence[float] | float | None = None,
    random_crop: bool = True,
    hflip: bool = True,
    image_size: int | None = None,
) -> StageData:
    """Load ``data_dir`` and build the transforms: ``pixel_mean``/``pixel_std`` None take the
    training images' statistics from dataset.json; ``image_size`` None takes the prepared crop."""
    data = load_prepared(data_dir)
    image_size = int(data.info["image_size"] if image_size is None else image_size)
    mean = data.info["mean"] if pixel_mean is None else pixel_mean
    std = data.info["std"] if pixel_std is None else pixel_std
    norm = {"image_size": image_size, "mean": mean, "std": std}
    return StageData(
        data=data,
        train_set=FaceDataset(data, "train"),
        val_set=FaceDataset(data, "val"),
        test_set=FaceDataset(data, "test"),
        train_transform=BatchTransform(train=True, hflip=hflip, random_crop=random_crop, **norm),
        eval_transform=BatchTransform(train=False, **norm),
        image_size=image_size,
        pixel_mean=_as_list(mean),
        pixel_std=_as_list(std),
    )


def data_identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """What of dataset.json determines a result (not where the data lies)."""
    return {k: v for k, v in info.items() if k not in ("data_root", "parameters")}


def fold_of(info: Mapping[str, Any]) -> int:
    """Which disjoint group of test identities the prepared data holds out (prepare's ``fold``;
    0 for data prepared before folds existed)."""
    return int(info.get("parameters", {}).get("fold", 0))


def data_fingerprint(data_dir: str | os.PathLike, info: Mapping[str, Any]) -> str:
    """A short hash of the prepared data a run reads: dataset.json's description (not where the
    data lies nor how preparation was run: :func:`data_identity`, which holds the content hash of
    streamed images), and the bytes of every other file (the manifest, the image cache)."""
    files = [p for p in sorted(Path(data_dir).rglob("*")) if p.is_file()]
    contents = [p for p in files if p.name != "dataset.json"]
    return artifacts.fingerprint(
        {
            "description": data_identity(info),
            "files": artifacts.files_fingerprint(contents, root=data_dir),
        }
    )


def threshold_of(metrics: Mapping[str, Any]) -> float | None:
    """The 1-image EER threshold from ``evaluate(..., with_pair_scores=True)``'s pair scores."""
    pairs = metrics.get("pair_scores", {}).get("t1")
    if pairs is None or not pairs["genuine"].any() or pairs["genuine"].all():
        return None
    return eer_threshold(pairs["scores"].double().numpy(), pairs["genuine"].numpy())


def evaluate(model: nn.Module, inputs: StageData, *, with_pair_scores: bool = False) -> dict:
    data = inputs.data
    return evaluate_face_model(
        model,
        val_set=inputs.val_set,
        test_set=inputs.test_set,
        manifest=data.manifest,
        transform=inputs.eval_transform,
        pairs=data.pairs,
        with_pair_scores=with_pair_scores,
    )


def claimed(paths: Iterable[str], checkpoint_dir: str = "") -> contextlib.AbstractContextManager:
    """One writer per output: the stage's outputs and its checkpoint locked for the run (see
    :func:`~facepruning.artifacts.claim_outputs`); under torchrun rank 0 holds the locks."""
    if os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()
    checkpoint = [str(Path(checkpoint_dir) / "last.pt")] if checkpoint_dir else []
    return artifacts.claim_outputs([*paths, *checkpoint])
