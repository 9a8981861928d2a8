"""Evaluation protocol files: LFW ``pairs.txt``, VGGFace2 pose templates, VGGFace2 loose boxes.

Each parser checks the file's structure line by line and, when it is given the images found on
disk (``available``, e.g. the output of
:func:`facepruning.prepare.sources.scan_identity_folders`), that every image it names exists;
errors name the file, the line and the fix, so a wrong path or a truncated download is caught
before hours of training, not during evaluation.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import pandas as pd

from ..errors import DataError

__all__ = [
    "POSES",
    "POSE_BLOCK",
    "lfw_image_path",
    "parse_lfw_pairs",
    "parse_pose_templates",
    "parse_loose_bboxes",
    "parse_loose_bbox_lines",
    "bbox_key",
]

# VGGFace2-Pose: per identity 30 lines, 10 per pose, each pose split into 2 templates of 5.
POSES: tuple[str, ...] = ("F", "Q", "P")
POSE_BLOCK = 30
_TEMPLATE_SIZE = 5


def lfw_image_path(name: str, number: int) -> str:
    """LFW's file naming: ``name/name_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def _available_set(available: Collection[str] | Mapping[str, Iterable[str]] | None) -> set | None:
    if available is None:
        return None
    if isinstance(available, Mapping):  # the identity -> paths tree from scan_identity_folders
        return {p for paths in available.values() for p in paths}
    return set(available)


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers."""
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist: check the protocol_file parameter")
    return [(n, line.strip()) for n, line in enumerate(_text(path).splitlines(), 1) if line.strip()]


def _text(path: Path) -> str:
    """A protocol file's text: UTF-8, or Latin-1 (LFW's names include accented letters, and older
    copies of its files are Latin-1); anything else is refused in one line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        raise DataError(f"{path} is not a text file (it holds NUL bytes): check the parameter")
    return data.decode("latin-1")  # every byte is a Latin-1 character


def _positive_int(text: str, path: Path, line_no: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{path}:{line_no}: expected a positive image number, got {text!r}")
    return value


def parse_lfw_pairs(
    path: str | os.PathLike,
    *,
    available: Collection[str] | Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Read LFW's ``pairs.txt`` into a DataFrame ``fold, a, b, genuine, line``.

    Format: a header ``"<folds> <n>"`` (``10 300`` for the View 2 file; a single ``<n>`` as in
    ``pairsDevTrain.txt`` means one fold), then per fold ``n`` matched lines ``name n1 n2``
    followed by ``n`` mismatched lines ``name1 n1 name2 n2``. ``fold`` counts from 0; ``a``
    and ``b`` are image paths relative to the ``lfw/`` folder; ``line`` is the line in the file.
    """
    path = Path(path)
    lines = _read_lines(path, "LFW pairs file")
    if not lines:
        raise DataError(f"LFW pairs file {path} is empty")
    header_no, header = lines[0]
    try:
        numbers = [int(x) for x in header.split()]
    except ValueError:
        numbers = []
    if len(numbers) == 1:
        numbers = [1, numbers[0]]
    if len(numbers) != 2 or min(numbers) < 1:
        raise DataError(
            f"{path}:{header_no}: expected the header '<folds> <pairs per class>' "
            f"(e.g. '10 300'), got {header!r}"
        )
    folds, per_class = numbers
    body = lines[1:]
    expected = folds * 2 * per_class
    if len(body) != expected:
        raise DataError(
            f"{path}: the header {header!r} announces {folds} folds x {per_class} matched + "
            f"{per_class} mismatched = {expected} pairs, but the file has {len(body)} pair "
            "lines; the file is truncated or is not an LFW pairs file"
        )
    known = _available_set(available)
    rows = []
    for i, (line_no, text) in enumerate(body):
        fold, within = divmod(i, 2 * per_class)
        genuine = within < per_class
        fields = text.split()
        if genuine and len(fields) == 3:
            a = lfw_image_path(fields[0], _positive_int(fields[1], path, line_no))
            b = lfw_image_path(fields[0], _positive_int(fields[2], path, line_no))
        elif not genuine and len(fields) == 4:
            a = lfw_image_path(fields[0], _positive_int(fields[1], path, line_no))
            b = lfw_image_path(fields[2], _positive_int(fields[3], path, line_no))
        else:
            kind = "matched ('name n1 n2')" if genuine else "mismatched ('name1 n1 name2 n2')"
            raise DataError(
                f"{path}:{line_no}: fold {fold} expects a {kind} pair here, got {text!r}"
            )
        if a == b:
            raise DataError(f"{path}:{line_no}: pairs image {a} with itself; fix the line")
        if not genuine and fields[0] == fields[2]:
            raise DataError(
                f"{path}:{line_no}: a mismatched pair of one person ({fields[0]}); fix the line"
            )
        if known is not None:
            for image in (a, b):
                if image not in known:
                    raise DataError(
                        f"{path}:{line_no}: image {image} does not exist under the data root; "
                        "point data_root at the lfw/ folder that matches this pairs.txt"
                    )
        rows.append((fold, a, b, genuine, line_no))
    return pd.DataFrame(rows, columns=["fold", "a", "b", "genuine", "line"])


def parse_pose_templates(
    path: str | os.PathLike,
    *,
    available: Collection[str] | Mapping[str, Iterable[str]] | None = None,
) -> pd.DataFrame:
    """Read VGGFace2's ``test_posetemp_imglist.txt`` into ``path, identity, pose, template, line``.

    One image per line (``n000001/0001_01.jpg``), 30 consecutive lines per identity: 10 frontal
    (``F``), 10 three-quarter (``Q``), 10 profile (``P``); each group of 10 is two templates of 5.
    ``template`` numbers the templates of the whole file from 0 (6 per identity, in file order).
    """
    path = Path(path)
    lines = _read_lines(path, "VGGFace2 pose template list")
    if not lines or len(lines) % POSE_BLOCK:
        raise DataError(
            f"{path} has {len(lines)} image lines; the pose protocol needs a multiple of "
            f"{POSE_BLOCK} (10 frontal, 10 three-quarter, 10 profile per identity)"
        )
    known = _available_set(available)
    rows = []
    seen_identities: set[str] = set()
    seen_paths: set[str] = set()
    for i, (line_no, text) in enumerate(lines):
        block, within = divmod(i, POSE_BLOCK)
        image = text.replace("\\", "/")
        if "/" not in image or len(text.split()) != 1:
            raise DataError(
                f"{path}:{line_no}: expected one 'identity/image.jpg' per line, got {text!r}"
            )
        identity = image.split("/", 1)[0]
        if within == 0:
            if identity in seen_identities:
                raise DataError(f"{path}:{line_no}: identity {identity} appears in two blocks")
            seen_identities.add(identity)
            block_identity = identity
        elif identity != block_identity:
            raise DataError(
                f"{path}:{line_no}: {image} belongs to {identity}, but lines "
                f"{lines[block * POSE_BLOCK][0]}.. form the 30-image block of {block_identity}"
            )
        if image in seen_paths:
            raise DataError(f"{path}:{line_no}: image {image} is listed twice")
        seen_paths.add(image)
        if known is not None and image not in known:
            raise DataError(
                f"{path}:{line_no}: image {image} does not exist under the data root; point "
                "data_root at the VGGFace2 folder (e.g. test/) that holds these identities"
            )
        pose = POSES[within // 10]
        template = block * 6 + within // _TEMPLATE_SIZE
        rows.append((image, identity, pose, template, line_no))
    return pd.DataFrame(rows, columns=["path", "identity", "pose", "template", "line"])


def bbox_key(path: str) -> str:
    """The key of an image in VGGFace2's box files: its relative path without the extension."""
    return os.path.splitext(path.replace("\\", "/"))[0]


def parse_loose_bboxes(path: str | os.PathLike) -> dict[str, tuple[float, float, float, float]]:
    """Read VGGFace2's ``loose_bb_*.csv`` into ``{"n000002/0001_01": (x, y, w, h)}``.

    The header must be ``NAME_ID,X,Y,W,H``; look images up with :func:`bbox_key`.
    """
    return {name: box for name, (box, _) in parse_loose_bbox_lines(path).items()}


def parse_loose_bbox_lines(
    path: str | os.PathLike,
) -> dict[str, tuple[tuple[float, float, float, float], int]]:
    """Like :func:`parse_loose_bboxes`, with the file's line number of each box: ``(box, line)``.

    The line lets an error about a box (e.g. one outside its image) point at the line to fix.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"bounding-box file {path} does not exist: check the bbox_file parameter")
    boxes: dict[str, tuple[tuple[float, float, float, float], int]] = {}
    with io.StringIO(_text(path), newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip().upper() for h in header] != ["NAME_ID", "X", "Y", "W", "H"]:
            raise DataError(
                f"{path}:1: expected the header NAME_ID,X,Y,W,H of VGGFace2's loose_bb_*.csv, "
                f"got {header}"
            )
        for line_no, fields in enumerate(reader, start=2):
            if not fields or not "".join(fields).strip():
                continue
            try:
                name = fields[0].strip().replace("\\", "/")
                x, y, w, h = (float(v) for v in fields[1:])
            except ValueError:
                raise DataError(
                    f"{path}:{line_no}: expected NAME_ID,X,Y,W,H with numbers, got {fields}"
                ) from None
            if not all(math.isfinite(v) for v in (x, y, w, h)):
                raise DataError(f"{path}:{line_no}: box of {name} is not finite: {fields[1:]}")
            if w < 1 or h < 1:
                raise DataError(
                    f"{path}:{line_no}: box of {name} is {w:g} x {h:g} pixels: a face box is at "
                    "least 1 pixel wide and high"
                )
            if name in boxes:
                raise DataError(
                    f"{path}:{line_no}: a second box for {name} (the first is on line "
                    f"{boxes[name][1]}); keep one"
                )
            boxes[name] = ((x, y, w, h), line_no)
    return boxes
