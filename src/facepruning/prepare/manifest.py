"""The identity split and the manifest table of a prepared data set.

Face recognition is evaluated *open-set*: the identities used for verification (``test``) never
appear in training. Training itself is closed-set identification, so a few images of every
training identity are held out (``val``) to watch the validation loss that drives the learning
rate schedule (the papers hold out 2% per identity). Everything is seeded and sorted, so the same
parameters give the same split on every machine. The manifest's columns are described in
:mod:`facepruning.data.manifest`, which also reads it back.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..data.manifest import BOX_COLUMNS, BOX_LINE_COLUMN
from ..errors import DataError, ParameterError
from .protocols import bbox_key

log = logging.getLogger(__name__)

__all__ = ["split_identities", "build_manifest", "index_pairs"]

Box = tuple[float, float, float, float]


def names_text(items: Sequence[str], limit: int = 20) -> str:
    """``a, b, c and 17 more``: a readable, bounded list of names for messages."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def split_identities(
    identities: Sequence[str],
    *,
    test_identities: int | Collection[str],
    seed: int,
    fold: int = 0,
) -> tuple[list[str], list[str]]:
    """Split ``identities`` into ``(train, test)``, both in the order given.

    ``test_identities`` is either a count (drawn at random with ``seed``) or the names fixed by an
    evaluation protocol (LFW pairs, VGGFace2 pose list). With a count, ``fold`` k tests the
    (k+1)-th of disjoint groups drawn one after another from the identities not drawn yet: the
    folds of one seed never share a test identity, and fold 0 is the plain draw.
    """
    identities = list(identities)
    if isinstance(test_identities, (int, np.integer)):
        k = int(test_identities)
        if not 0 <= k <= len(identities):
            raise ParameterError(
                f"test_identities={k} but only {len(identities)} identities are available"
            )
        if (fold + 1) * k > len(identities):
            raise ParameterError(
                f"fold={fold} needs {(fold + 1) * k} identities ({fold + 1} disjoint groups of "
                f"test_identities={k}) but only {len(identities)} are available: lower fold or "
                "test_identities"
            )
        rng, left = np.random.default_rng(seed), np.arange(len(identities))
        for _ in range(fold + 1):
            chosen = left[rng.choice(left.size, size=k, replace=False)]
            left = np.setdiff1d(left, chosen)
        test = {identities[i] for i in chosen}
    else:
        if fold:
            raise ParameterError(
                f"fold={fold}, but the protocol fixes the test identities: folds split a drawn "
                "set of identities; leave fold at 0 with a protocol file"
            )
        test = set(test_identities)
        unknown = sorted(test - set(identities))
        if unknown:
            raise DataError(f"test identities not found in the data: {names_text(unknown)}")
    return [i for i in identities if i not in test], [i for i in identities if i in test]


def _val_choice(n_images: int, n_val: int, *, seed: int, identity: str) -> set[int]:
    # One stream per identity (seed + a stable hash of its name): adding or removing an identity
    # does not reshuffle the validation images of all the others.
    rng = np.random.default_rng([seed, zlib.crc32(identity.encode("utf-8"))])
    return {int(i) for i in rng.choice(n_images, size=n_val, replace=False)}


def _check_split_arguments(
    tree: Mapping[str, Sequence[str]], val_per_identity: int, min_images_per_identity: int
) -> None:
    if val_per_identity < 0:
        raise ParameterError(f"val_per_identity must be >= 0, got {val_per_identity}")
    if min_images_per_identity < val_per_identity + 1:
        raise ParameterError(
            f"min_images_per_identity={min_images_per_identity} must exceed "
            f"val_per_identity={val_per_identity}: every training identity needs a train image"
        )
    if not tree:
        raise DataError("no identities to split")


def _protocol_identities(
    tree: Mapping[str, Sequence[str]],
    test_identities: int | Collection[str],
    pose: pd.DataFrame | None,
) -> list[str] | None:
    """The test identities fixed by a protocol (pose list or names), or None for a count."""
    if pose is not None:
        fixed = list(dict.fromkeys(pose["identity"]))
    elif not isinstance(test_identities, (int, np.integer)):
        fixed = list(dict.fromkeys(test_identities))
    else:
        return None
    missing = [i for i in fixed if i not in tree]
    if missing:
        raise DataError(
            "the protocol names identities with no folder under the data root: "
            f"{names_text(missing)}"
        )
    return fixed


def _eligible_identities(
    tree: Mapping[str, Sequence[str]], min_images: int, fixed: Collection[str]
) -> list[str]:
    """Identities with enough images (protocol-fixed ones always), warning about the others."""
    too_few = [i for i in tree if len(tree[i]) < min_images and i not in fixed]
    if too_few:
        log.warning(
            f"skipping {len(too_few)} identities with fewer than min_images_per_identity="
            f"{min_images} images: {names_text(too_few)}"
        )
    skipped = set(too_few)
    return [i for i in tree if i not in skipped]


def _split_eligible(
    eligible: list[str],
    *,
    fixed: list[str] | None,
    test_identities: int | Collection[str],
    min_images: int,
    seed: int,
    fold: int = 0,
) -> tuple[list[str], list[str]]:
    """``(train, test)`` identities, checking that enough of them are left to train on."""
    if fixed is not None:
        train_ids, test_ids = split_identities(
            eligible, test_identities=fixed, seed=seed, fold=fold
        )
        if len(train_ids) < 2:
            raise DataError(
                f"only {len(train_ids)} training identities (outside the protocol's test "
                f"identities) have at least {min_images} images; at least 2 are "
                "needed: lower min_images_per_identity or add identities to data_root"
            )
        return train_ids, test_ids
    k = int(test_identities)  # type: ignore[arg-type]
    if k < 2:
        raise ParameterError(
            f"test_identities must be >= 2 (verification needs impostor pairs), got {k}"
        )
    needed = k + 2
    if len(eligible) < needed:
        raise DataError(
            f"only {len(eligible)} identities have at least min_images_per_identity="
            f"{min_images} images; {needed} are needed (test_identities={k} "
            "plus at least 2 to train on): lower min_images_per_identity or test_identities"
        )
    return split_identities(eligible, test_identities=k, seed=seed, fold=fold)


def _manifest_rows(
    tree: Mapping[str, Sequence[str]],
    *,
    train_ids: list[str],
    test_ids: list[str],
    pose: pd.DataFrame | None,
    val_per_identity: int,
    seed: int,
) -> list[dict[str, Any]]:
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
        elif identity in test_set and pose_rows is not None:
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
        elif identity in test_set:
            for p in tree[identity]:
                rows.append({"path": p, "identity": identity, "label": -1, "split": "test"})
    return rows


def _add_boxes(
    manifest: pd.DataFrame, boxes: Mapping[str, Box], box_lines: Mapping[str, int] | None
) -> None:
    keys = [bbox_key(p) for p in manifest["path"]]
    missing = [k for k in keys if k not in boxes]
    if missing:
        raise DataError(
            f"the bounding-box file has no box for {len(missing)} of {len(keys)} images "
            f"(first: {missing[0]}); use the loose_bb file of the same VGGFace2 split as "
            "data_root, or leave bbox_file empty"
        )
    manifest[list(BOX_COLUMNS)] = np.array([boxes[k] for k in keys], dtype=np.float64)
    if box_lines is not None:
        manifest[BOX_LINE_COLUMN] = np.array([box_lines[k] for k in keys], dtype=np.int64)


def build_manifest(
    tree: Mapping[str, Sequence[str]],
    *,
    seed: int,
    test_identities: int | Collection[str],
    val_per_identity: int,
    min_images_per_identity: int,
    fold: int = 0,
    pose: pd.DataFrame | None = None,
    boxes: Mapping[str, Box] | None = None,
    box_lines: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """One row per image: ``index, path, identity, label, split`` (+ ``pose, template``, boxes).

    ``tree`` is :func:`facepruning.prepare.sources.scan_identity_folders`'s output. Identities
    with fewer than ``min_images_per_identity`` images are skipped with a warning (protocol-fixed
    test identities excepted: LFW keeps people with a single image). With ``pose`` (the VGGFace2
    pose list) the listed identities are the test identities and only the listed images are kept
    for them. ``fold`` picks one of disjoint groups of drawn test identities
    (:func:`split_identities`). ``label`` numbers the training identities in sorted order; test
    rows get -1.
    ``boxes`` adds the face box columns, ``box_lines`` (the box file's line of each box) the
    ``box_line`` column that lets errors about a box name its line.
    """
    _check_split_arguments(tree, val_per_identity, min_images_per_identity)
    fixed = _protocol_identities(tree, test_identities, pose)
    eligible = _eligible_identities(tree, min_images_per_identity, set(fixed or ()))
    train_ids, test_ids = _split_eligible(
        eligible,
        fixed=fixed,
        test_identities=test_identities,
        min_images=min_images_per_identity,
        seed=seed,
        fold=fold,
    )
    rows = _manifest_rows(
        tree,
        train_ids=train_ids,
        test_ids=test_ids,
        pose=pose,
        val_per_identity=val_per_identity,
        seed=seed,
    )
    manifest = pd.DataFrame(rows)
    manifest.insert(0, "index", np.arange(len(manifest), dtype=np.int64))
    if pose is not None:
        # Training rows have no pose: empty string, template -1, so the CSV stays rectangular.
        manifest["pose"] = manifest["pose"].fillna("")
        manifest["template"] = manifest["template"].fillna(-1).astype(np.int64)
    if boxes is not None:
        _add_boxes(manifest, boxes, box_lines)
    return manifest


def index_pairs(pairs: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Turn a pairs table with image paths (``a``, ``b``) into manifest indices."""
    position = dict(zip(manifest["path"], manifest["index"], strict=True))
    missing = [p for p in pd.concat([pairs["a"], pairs["b"]]) if p not in position]
    if missing:
        raise DataError(
            f"pair images missing from the manifest: {names_text(sorted(set(missing)))}"
        )
    return pd.DataFrame(
        {
            "fold": pairs["fold"].astype(np.int64),
            "a": pairs["a"].map(position).astype(np.int64),
            "b": pairs["b"].map(position).astype(np.int64),
            "genuine": pairs["genuine"].astype(bool),
        }
    )
