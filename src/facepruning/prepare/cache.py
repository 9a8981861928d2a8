"""The uint8 image cache of a prepared data set and the statistics written to dataset.json.

Decoding goes through :func:`facepruning.data.images.read_image` and
:func:`facepruning.data.images.face_tensor`, the same code the streaming loaders use, so cached
and streamed images are identical pixel for pixel.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from ..data.images import GRAYSCALE_MODES, Box, check_on_error, face_tensor, read_image
from ..errors import DataError, ParameterError
from ..progress import progress_bar

log = logging.getLogger(__name__)

__all__ = ["detect_channels", "build_cache", "channel_stats"]


def detect_channels(
    paths: Sequence[str | os.PathLike],
    *,
    root: str | os.PathLike | None = None,
    sample: int = 64,
) -> int:
    """1 if the (evenly sampled) images are all grayscale, else 3 (grayscale images among colour
    ones are then converted to RGB).

    Only the sampled images are decoded, so this is cheap even for large trees; an image that
    does not decode (a truncated JPEG) does not count, whatever its header says, and is left for
    the cache step to report or skip.
    """
    if not paths:
        raise DataError("no images to inspect")
    step = max(1, len(paths) // max(1, sample))
    for p in list(paths)[::step]:
        full = Path(root) / p if root is not None else Path(p)
        try:
            with Image.open(full) as img:
                img.load()  # a truncated file fails here, not on its header
                if img.mode not in GRAYSCALE_MODES:
                    return 3
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            continue
    return 1


def _reason(exc: DataError) -> str:
    """One line saying why an image could not be read (the underlying decoder error)."""
    cause = exc.__cause__
    text = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return " ".join(text.split())


def build_cache(
    paths: Sequence[str | os.PathLike],
    *,
    size: int,
    channels: int,
    boxes: Sequence[Box | None] | None = None,
    box_sources: Sequence[str] | None = None,
    enlarge: float = 0.3,
    root: str | os.PathLike | None = None,
    on_error: str = "raise",
    progress: bool = True,
    return_failed: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, dict[int, str]]:
    """Decode every image into one uint8 tensor ``[N, channels, size, size]`` (row i = paths[i]).

    ``paths`` are relative to ``root`` when it is given; ``boxes`` (aligned with ``paths``) are
    the loose face boxes and ``box_sources`` where each came from (``file:line``, for errors).
    With ``on_error="skip"`` unreadable images leave a zero row and a warning;
    ``return_failed=True`` also returns ``{row: one-line reason}`` for them, so the caller can
    drop them from the manifest and keep rows and manifest aligned. A face box that does not fit
    its image always raises: it is an error of the box file, not of the image.
    """
    check_on_error(on_error)
    for name, seq in (("boxes", boxes), ("box_sources", box_sources)):
        if seq is not None and len(seq) != len(paths):
            raise ParameterError(f"{len(seq)} {name} for {len(paths)} images")
    out = torch.zeros((len(paths), channels, size, size), dtype=torch.uint8)
    failed: dict[int, str] = {}
    for i, p in enumerate(
        progress_bar(paths, desc="decoding images", unit="img", disable=not progress)
    ):
        full = Path(root) / p if root is not None else Path(p)
        try:
            img = read_image(full)
        except DataError as exc:
            if on_error == "raise":
                raise
            failed[i] = _reason(exc)
            log.warning(f"skipping {full}: {failed[i]}")
            continue
        out[i] = face_tensor(
            img,
            size=size,
            channels=channels,
            box=None if boxes is None else boxes[i],
            enlarge=enlarge,
            image=full,
            box_source="" if box_sources is None else box_sources[i],
        )
    return (out, failed) if return_failed else out


def channel_stats(images: torch.Tensor, *, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..255 scale) of uint8 images ``[N, C, S, S]``, as 3 values.

    Grayscale statistics are repeated three times because
    :class:`facepruning.data.BatchTransform` replicates grayscale to three channels before
    normalising. Accumulated in float64 chunks: exact and bounded in memory for large caches.
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
