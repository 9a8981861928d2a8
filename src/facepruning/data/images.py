"""Decoding images and the papers' face crop: the pixels every stage sees.

The papers crop VGGFace2 faces with the data set's loose MTCNN box enlarged by 30%, resize so the
shortest side is 129 and take a 113x113 crop (random for training, central for testing). Here
that becomes: :func:`loose_box_crop` (optional, when boxes exist), :func:`resize_center_square` to
``resize`` x ``resize`` (the cache, stored as uint8), and later a crop of ``image_size`` in
:class:`facepruning.data.BatchTransform`. :func:`load_face` chains the first two steps and is
shared by the cache (:mod:`facepruning.prepare.cache`) and by streaming loaders, so both see
identical pixels.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError, ParameterError

log = logging.getLogger(__name__)

__all__ = [
    "Box",
    "GRAYSCALE_MODES",
    "read_image",
    "loose_box_crop",
    "resize_center_square",
    "image_to_tensor",
    "ON_ERROR",
    "check_on_error",
    "face_tensor",
    "load_face",
]

Box = tuple[float, float, float, float]

# Pillow modes that carry one intensity channel (with or without alpha).
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
# Integer grayscale modes: Pillow opens 16-bit PNG/TIFF/PGM as one of these.
_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16B", "I;16L"})
ON_ERROR: tuple[str, ...] = ("raise", "skip")


def check_on_error(on_error: str) -> None:
    """Refuse any ``on_error`` other than ``"raise"`` or ``"skip"``."""
    if on_error not in ON_ERROR:
        raise ParameterError(
            f"on_error={on_error!r} is not accepted; use one of {list(ON_ERROR)} ('raise' stops "
            "at the first unreadable image, 'skip' leaves it out and lists it)"
        )


def _to_eight_bit(img: Image.Image) -> Image.Image:
    """8-bit ``L`` from 16-bit or float grayscale, scaled by the bit depth, not the content.

    16-bit values map to ``round(v * 255 / 65535)``, so two images keep their relative brightness
    whatever range their pixels happen to span. Float images (mode ``F``) are taken as 0..255.
    """
    if img.mode in _SIXTEEN_BIT_MODES:
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        arr = (arr * 255 + 65535 // 2) // 65535  # integer round-half-up: exact
    else:
        arr = np.rint(np.asarray(img, dtype=np.float64))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L")


def read_image(path: str | os.PathLike, *, on_error: str = "raise") -> Image.Image | None:
    """Decode ``path`` fully; grayscale stays one channel (mode ``L``), the rest becomes RGB.

    Any failure (missing file, not an image, truncated data, decompression bomb) becomes a
    :class:`DataError` naming the file, or with ``on_error="skip"`` a warning naming it and
    ``None``, so one bad file among millions never surfaces as a traceback deep inside PIL.
    """
    check_on_error(on_error)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: Image.open is lazy and would fail later, far from here
            if img.mode in GRAYSCALE_MODES:
                # 16-bit and float grayscale need rescaling before L; 8-bit converts directly.
                if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
                    return _to_eight_bit(img)
                return img.convert("L")
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        message = f"cannot read image {path}: {type(exc).__name__}: {exc}"
        if on_error == "skip":
            log.warning(f"skipping {path}: {message}")
            return None
        raise DataError(
            message + " (remove or replace the file, or skip unreadable images with "
            "on_error='skip')"
        ) from exc


def _box_text(box: Box) -> str:
    # Plain numbers: boxes often hold numpy scalars, whose repr reads np.float64(500.0).
    return "(x={:g}, y={:g}, w={:g}, h={:g})".format(*(float(v) for v in box))


def loose_box_crop(
    img: Image.Image,
    box: Box,
    *,
    enlarge: float = 0.3,
    image: str | os.PathLike = "",
    source: str = "",
) -> Image.Image:
    """Crop the face box ``(x, y, w, h)`` enlarged by ``enlarge`` (0.3 = +30% per side length).

    The enlargement keeps the box centre; the result is clipped to the image, as in the papers'
    VGGFace2 preprocessing (the loose boxes often reach past the border). ``image`` (the file)
    and ``source`` (where the box came from, e.g. ``loose_bb_test.csv:17``) only serve the error
    message of a box that cannot be cropped.
    """
    if enlarge < 0:
        raise ParameterError(f"bbox enlarge must be >= 0, got {enlarge}")
    x, y, w, h = (float(v) for v in box)
    where = (f" of {Path(image).as_posix()}" if str(image) else "") + (
        f" from {source}" if source else ""
    )
    fix = (
        "fix or remove that line of the box file (x, y, w, h in pixels of this image), or "
        "leave bbox_file empty"
    )
    if w <= 0 or h <= 0:
        raise DataError(f"face box {_box_text(box)}{where} has width/height <= 0: {fix}")
    cx, cy = x + w / 2, y + h / 2
    w, h = w * (1 + enlarge), h * (1 + enlarge)
    left = max(0, math.floor(cx - w / 2))
    top = max(0, math.floor(cy - h / 2))
    right = min(img.width, math.ceil(cx + w / 2))
    bottom = min(img.height, math.ceil(cy + h / 2))
    if right <= left or bottom <= top:
        raise DataError(
            f"face box {_box_text(box)}{where} lies outside the {img.width}x{img.height} "
            f"image: {fix}"
        )
    return img.crop((left, top, right, bottom))


def resize_center_square(img: Image.Image, size: int) -> Image.Image:
    """Resize so the shortest side is ``size`` (aspect kept), then crop the central square."""
    if size < 1:
        raise ParameterError(f"resize must be >= 1, got {size}")
    w, h = img.size
    scale = size / min(w, h)
    # max(size, ...) guards against rounding the long side below size.
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def image_to_tensor(img: Image.Image, *, channels: int) -> torch.Tensor:
    """A uint8 tensor ``[channels, H, W]``; colour images become gray for ``channels=1``."""
    if channels not in (1, 3):
        raise ParameterError(f"channels must be 1 or 3, got {channels}")
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.array(img, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr))


def face_tensor(
    img: Image.Image,
    *,
    size: int,
    channels: int,
    box: Box | None = None,
    enlarge: float = 0.3,
    image: str | os.PathLike = "",
    box_source: str = "",
) -> torch.Tensor:
    """Crop (when ``box`` is given), resize/centre-crop and tensorise one decoded face image."""
    if box is not None:
        img = loose_box_crop(img, box, enlarge=enlarge, image=image, source=box_source)
    return image_to_tensor(resize_center_square(img, size), channels=channels)


def load_face(
    path: str | os.PathLike,
    *,
    size: int,
    channels: int,
    box: Box | None = None,
    enlarge: float = 0.3,
    on_error: str = "raise",
    box_source: str = "",
) -> torch.Tensor | None:
    """Read, crop (when ``box`` is given), resize/centre-crop and tensorise one face image.

    ``box_source`` says where ``box`` came from (``file:line``) for the error of a bad box.
    """
    img = read_image(path, on_error=on_error)
    if img is None:
        return None
    return face_tensor(
        img,
        size=size,
        channels=channels,
        box=box,
        enlarge=enlarge,
        image=path,
        box_source=box_source,
    )
