"""Decoding images, the papers' face crop, and the uint8 image cache.

The papers crop VGGFace2 faces with the data set's loose MTCNN box enlarged by 30%, resize so the
shortest side is 129 and take a 113x113 crop (random for training, central for testing). Here
that becomes: :func:`loose_box_crop` (optional, when boxes exist), :func:`resize_center_square` to
``resize`` x ``resize`` (the cache, stored as uint8), and later a crop of ``image_size`` in
:class:`facepruning.loaders.BatchTransform`. :func:`load_face` chains the first two steps and is
shared by the cache and by streaming loaders, so both see identical pixels.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .errors import DataError, ParameterError

__all__ = [
    "GRAYSCALE_MODES",
    "read_image",
    "loose_box_crop",
    "resize_center_square",
    "image_to_tensor",
    "load_face",
    "detect_channels",
    "build_cache",
]

Box = tuple[float, float, float, float]

# Pillow modes that carry one intensity channel (with or without alpha).
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
_ON_ERROR = ("raise", "skip")


def _check_on_error(on_error: str) -> None:
    if on_error not in _ON_ERROR:
        raise ParameterError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}")


def read_image(path: str | os.PathLike, *, on_error: str = "raise") -> Image.Image | None:
    """Decode ``path`` fully; grayscale stays one channel (mode ``L``), the rest becomes RGB.

    Any failure (missing file, not an image, truncated data, decompression bomb) becomes a
    :class:`DataError` naming the file, or with ``on_error="skip"`` a warning naming it and
    ``None``, so one bad file among millions never surfaces as a traceback deep inside PIL.
    """
    _check_on_error(on_error)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: Image.open is lazy and would fail later, far from here
            if img.mode in GRAYSCALE_MODES:
                # 16-bit and float grayscale need rescaling before L; 8-bit converts directly.
                if img.mode.startswith("I") or img.mode == "F":
                    arr = np.asarray(img, dtype=np.float64)
                    top = 255.0 if arr.max(initial=0) <= 255 else float(arr.max())
                    arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
                    return Image.fromarray(arr, mode="L")
                return img.convert("L")
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        message = f"cannot read image {path}: {type(exc).__name__}: {exc}"
        if on_error == "skip":
            warnings.warn(f"skipping {path}: {message}", stacklevel=2)
            return None
        raise DataError(
            message + " (remove or replace the file, or skip unreadable images with "
            "on_error='skip')"
        ) from exc


def loose_box_crop(img: Image.Image, box: Box, *, enlarge: float = 0.3) -> Image.Image:
    """Crop the face box ``(x, y, w, h)`` enlarged by ``enlarge`` (0.3 = +30% per side length).

    The enlargement keeps the box centre; the result is clipped to the image, as in the papers'
    VGGFace2 preprocessing (the loose boxes often reach past the border).
    """
    if enlarge < 0:
        raise ParameterError(f"bbox enlarge must be >= 0, got {enlarge}")
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise DataError(f"face box {box} has width/height <= 0")
    cx, cy = x + w / 2, y + h / 2
    w, h = w * (1 + enlarge), h * (1 + enlarge)
    left = max(0, math.floor(cx - w / 2))
    top = max(0, math.floor(cy - h / 2))
    right = min(img.width, math.ceil(cx + w / 2))
    bottom = min(img.height, math.ceil(cy + h / 2))
    if right <= left or bottom <= top:
        raise DataError(
            f"face box {box} lies outside the {img.width}x{img.height} image; check the box file"
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


def load_face(
    path: str | os.PathLike,
    *,
    size: int,
    channels: int,
    box: Box | None = None,
    enlarge: float = 0.3,
    on_error: str = "raise",
) -> torch.Tensor | None:
    """Read, crop (when ``box`` is given), resize/centre-crop and tensorise one face image."""
    img = read_image(path, on_error=on_error)
    if img is None:
        return None
    if box is not None:
        img = loose_box_crop(img, box, enlarge=enlarge)
    return image_to_tensor(resize_center_square(img, size), channels=channels)


def detect_channels(
    paths: Sequence[str | os.PathLike],
    *,
    root: str | os.PathLike | None = None,
    sample: int = 64,
) -> int:
    """1 if the (evenly sampled) images are all grayscale, else 3.

    Only headers are read (``Image.open`` is lazy), so this is cheap even for large trees;
    unreadable files are left for the cache step to report.
    """
    if not paths:
        raise DataError("no images to inspect")
    step = max(1, len(paths) // max(1, sample))
    for p in list(paths)[::step]:
        full = Path(root) / p if root is not None else Path(p)
        try:
            with Image.open(full) as img:
                if img.mode not in GRAYSCALE_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
    return 1


def build_cache(
    paths: Sequence[str | os.PathLike],
    *,
    size: int,
    channels: int,
    boxes: Sequence[Box | None] | None = None,
    enlarge: float = 0.3,
    root: str | os.PathLike | None = None,
    on_error: str = "raise",
    progress: bool = True,
    return_failed: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, list[int]]:
    """Decode every image into one uint8 tensor ``[N, channels, size, size]`` (row i = paths[i]).

    ``paths`` are relative to ``root`` when it is given; ``boxes`` (aligned with ``paths``) are
    the loose face boxes. With ``on_error="skip"`` unreadable images leave a zero row and a
    warning; ``return_failed=True`` also returns their row numbers, so the caller can drop them
    from the manifest and keep rows and manifest aligned.
    """
    _check_on_error(on_error)
    if boxes is not None and len(boxes) != len(paths):
        raise ParameterError(f"{len(boxes)} boxes for {len(paths)} images")
    out = torch.zeros((len(paths), channels, size, size), dtype=torch.uint8)
    failed: list[int] = []
    for i, p in enumerate(tqdm(paths, desc="decoding images", unit="img", disable=not progress)):
        full = Path(root) / p if root is not None else Path(p)
        face = load_face(
            full,
            size=size,
            channels=channels,
            box=None if boxes is None else boxes[i],
            enlarge=enlarge,
            on_error=on_error,
        )
        if face is None:
            failed.append(i)
        else:
            out[i] = face
    return (out, failed) if return_failed else out
