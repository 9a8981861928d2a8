"""Tensors for training and evaluation, read from the prepared data of notebook 01.

Images travel as uint8 ``[C, S, S]`` (cheap to store, cheap to batch) and become float only in
:class:`BatchTransform`, which works on whole batches. Every random decision there (crop offsets,
flips) is drawn from a ``torch.Generator`` passed by the caller, so a training run that saves and
restores its generator state resumes with exactly the batches it would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from ..artifacts import load_torch, read_json
from ..errors import DataError, ParameterError
from .images import load_face
from .manifest import BOX_COLUMNS, BOX_LINE_COLUMN, SPLITS, read_manifest

__all__ = ["PreparedData", "load_prepared", "FaceDataset", "BatchTransform"]

_RUN_FIRST = "run the prepare stage (dvc repro prepare) / notebook 01_data_preparation first"


@dataclass
class PreparedData:
    """A prepared data set: the manifest, dataset.json, the image cache and LFW pairs if any."""

    manifest: pd.DataFrame
    info: dict[str, Any]
    images: torch.Tensor | None = None
    pairs: pd.DataFrame | None = None

    @property
    def data_root(self) -> Path:
        """Where ``manifest.path`` is relative to (relative roots: to the repository root)."""
        return Path(self.info["data_root"])

    @property
    def num_classes(self) -> int:
        return int(self.info["num_classes"])

    def split(self, name: str) -> pd.DataFrame:
        """The manifest rows of one split (``train``, ``val``, ``test``)."""
        if name not in SPLITS:
            raise ParameterError(f"unknown split {name!r}; choose one of {list(SPLITS)}")
        return self.manifest[self.manifest["split"] == name]


def load_prepared(processed_dir: str | os.PathLike, *, images: bool = True) -> PreparedData:
    """Read ``<processed_dir>``; ``images=False`` skips loading the cache (e.g. for plots)."""
    processed_dir = Path(processed_dir)
    info_path = processed_dir / "dataset.json"
    if not processed_dir.is_dir() or not info_path.is_file():
        raise DataError(f"no prepared data in {processed_dir} (dataset.json missing): {_RUN_FIRST}")
    try:
        info = read_json(info_path)
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise DataError(
            f"{info_path} is truncated or corrupt ({type(e).__name__}): {_RUN_FIRST}"
        ) from None
    if not isinstance(info, dict):
        raise DataError(f"{info_path} holds a {type(info).__name__}, not a data set: {_RUN_FIRST}")
    manifest = read_manifest(processed_dir / "manifest.csv")
    cache = None
    cache_path = processed_dir / "images.pt"
    if images and cache_path.is_file():
        cache = load_torch(cache_path)["images"]
        if len(cache) != len(manifest):
            raise DataError(
                f"{cache_path} holds {len(cache)} images but the manifest {len(manifest)} rows: "
                f"the folder mixes two runs; {_RUN_FIRST}"
            )
    elif images and info.get("cached"):
        raise DataError(
            f"dataset.json says the images were cached but {cache_path} is missing: {_RUN_FIRST}"
        )
    pairs = None
    if (processed_dir / "pairs.csv").is_file():
        pairs = pd.read_csv(processed_dir / "pairs.csv")
    return PreparedData(manifest=manifest, info=info, images=cache, pairs=pairs)


class FaceDataset(Dataset):
    """The images of one or more splits as ``(uint8 [C, S, S], label, manifest index)``.

    Reads rows of the cache when the prepared data has one; otherwise decodes each image from
    ``data_root`` with the same crop and resize as the cache (streaming, for data sets too large
    to cache such as VGGFace2). ``label`` is -1 for test identities.
    """

    def __init__(self, prepared: PreparedData, split: str | Sequence[str]) -> None:
        splits = [split] if isinstance(split, str) else list(split)
        unknown = [s for s in splits if s not in SPLITS]
        if unknown or not splits:
            raise ParameterError(f"unknown split {unknown or split!r}; choose from {list(SPLITS)}")
        rows = prepared.manifest[prepared.manifest["split"].isin(splits)]
        self.prepared = prepared
        # Copies: pandas may hand out read-only arrays, which torch refuses to wrap silently.
        self.indices = torch.from_numpy(rows["index"].to_numpy(dtype="int64", copy=True))
        self.labels = torch.from_numpy(rows["label"].to_numpy(dtype="int64", copy=True))
        self._paths = list(rows["path"])
        has_boxes = all(c in rows.columns for c in BOX_COLUMNS)
        self._boxes = [tuple(b) for b in rows[list(BOX_COLUMNS)].to_numpy()] if has_boxes else None
        self._box_sources = _box_sources(rows, prepared.info) if has_boxes else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        index = int(self.indices[i])
        if self.prepared.images is not None:
            image = self.prepared.images[index]
        else:
            info = self.prepared.info
            image = load_face(
                self.prepared.data_root / self._paths[i],
                size=int(info["resize"]),
                channels=int(info["channels"]),
                box=None if self._boxes is None else self._boxes[i],
                enlarge=float(info.get("bbox_enlarge", 0.3)),
                box_source="" if self._box_sources is None else self._box_sources[i],
            )
        return image, int(self.labels[i]), index


def _box_sources(rows: pd.DataFrame, info: dict[str, Any]) -> list[str]:
    """``file:line`` of each row's face box (for error messages), as far as it is known."""
    bbox_file = str(info.get("parameters", {}).get("bbox_file", "")) or "the box file"
    if BOX_LINE_COLUMN not in rows.columns:
        return [bbox_file] * len(rows)
    return [f"{bbox_file}:{int(n)}" for n in rows[BOX_LINE_COLUMN]]


def _per_channel(values: float | Sequence[float], name: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        t = t.repeat(3)
    if t.numel() != 3:
        raise ParameterError(f"{name} needs 1 or 3 values (0..255 scale), got {t.tolist()}")
    if name == "std" and bool((t <= 0).any()):
        raise ParameterError(f"std must be positive, got {t.tolist()}")
    return t.view(1, 3, 1, 1)


class BatchTransform:
    """uint8 ``[B, C, S, S]`` -> normalised float ``[B, 3, s, s]`` in channels_last.

    Training: a random ``image_size`` crop per image and a random horizontal flip (each can be
    turned off); evaluation: the centre crop, no flip (the papers' 113-of-129 protocol). Grayscale
    is replicated to three channels, then ``(x - mean) / std`` with ``mean`` and ``std`` on the
    0..255 scale (e.g. the papers' VGGFace2 means 131.09, 103.88, 91.50 and std 1). Random draws
    come only from ``generator`` (the global torch RNG when it is None), in a fixed order: crop
    rows, crop columns, flips.
    """

    def __init__(
        self,
        *,
        image_size: int,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        train: bool,
        hflip: bool = True,
        random_crop: bool = True,
    ) -> None:
        if image_size < 1:
            raise ParameterError(f"image_size must be >= 1, got {image_size}")
        self.image_size = int(image_size)
        self.mean = _per_channel(mean, "mean")
        self.std = _per_channel(std, "std")
        self.train = bool(train)
        self.hflip = bool(hflip)
        self.random_crop = bool(random_crop)

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] not in (1, 3):
            raise DataError(
                f"BatchTransform expects uint8 [B, 1|3, S, S], got {batch.dtype} "
                f"{tuple(batch.shape)}"
            )
        b, _, height, width = batch.shape
        s = self.image_size
        if height < s or width < s:
            raise ParameterError(f"image_size={s} is larger than the {height}x{width} images")
        # Offsets and flips are drawn on the CPU (where the generator lives) and then moved.
        if self.train and self.random_crop:
            top = torch.randint(0, height - s + 1, (b,), generator=generator)
            left = torch.randint(0, width - s + 1, (b,), generator=generator)
        else:
            top = torch.full((b,), (height - s) // 2, dtype=torch.long)
            left = torch.full((b,), (width - s) // 2, dtype=torch.long)
        span = torch.arange(s)
        rows = top[:, None] + span  # [B, s]
        cols = left[:, None] + span  # [B, s]
        if self.train and self.hflip:
            flip = torch.rand(b, generator=generator) < 0.5
            cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flip reverses the columns
        device = batch.device
        rows, cols = rows.to(device), cols.to(device)
        # One gather does crop and flip for every image of the batch at once.
        out = batch[
            torch.arange(b, device=device)[:, None, None, None],
            torch.arange(batch.shape[1], device=device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        out = out.to(torch.float32)
        if out.shape[1] == 1:
            out = out.expand(-1, 3, -1, -1)
        out = (out - self.mean.to(device)) / self.std.to(device)
        return out.contiguous(memory_format=torch.channels_last)

    def __repr__(self) -> str:
        return (
            f"BatchTransform(image_size={self.image_size}, train={self.train}, "
            f"hflip={self.hflip}, random_crop={self.random_crop}, "
            f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"
        )
