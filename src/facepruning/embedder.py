"""Face descriptors from a trained or pruned model in a few lines: :func:`load_embedder`.

::

    import facepruning
    face = facepruning.load_embedder("models/pruned/squeezenet-taylor_activation.pt")
    d = face.embed(["a.jpg", "b.jpg"])       # numpy [2, D], unit rows
    face.similarity("a.jpg", "b.jpg")        # cosine similarity
    face.verify("a.jpg", "b.jpg")            # same person? (at the model's EER threshold)

The embedder reads our ``.pt`` files (:func:`~facepruning.pruning.save_model`) with PyTorch, or
an exported ``.onnx`` file (:func:`~facepruning.export.export_onnx`) with ONNX Runtime, and
prepares every image as the model was trained: grayscale faces (or every face, for a network
trained on grayscale data) become one intensity channel replicated to three, the shortest side
is resized to ``resize`` and the central ``resize`` square kept (as the prepared image cache
does), then the central ``image_size`` crop is taken and normalised. Images are expected to be
face crops already (the data's face box, if any, is not applied).

The verification threshold is the EER threshold stored with the model (``eer_threshold``), or
the one passed as ``load_embedder(path, threshold=...)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .data.images import GRAYSCALE_MODES, read_image, resize_center_square
from .errors import DataError, ModelError

__all__ = ["Embedder", "load_embedder"]

ImageLike = str | os.PathLike | Image.Image


class Embedder:
    """Turns face images into unit descriptors with one model; see :func:`load_embedder`."""

    def __init__(self, run, info: Mapping[str, Any], *, threshold: float | None, batch_size=32):
        self._run = run  # float32 [N, 3, S, S] 0..255 -> [N, D]
        self.info = dict(info)
        self.image_size = int(info["image_size"])
        self.resize = max(int(info.get("resize") or self.image_size), self.image_size)
        self.channels = info.get("channels")
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size = int(batch_size)

    def prepare(self, image: ImageLike) -> np.ndarray:
        """One image as the network's input: float32 ``[3, S, S]`` on the 0..255 scale."""
        img = resize_center_square(_decode(image), self.resize)
        if self.channels == 1 and img.mode != "L":  # as the image cache: resize, then convert
            img = img.convert("L")
        arr = np.asarray(img, dtype=np.float32)
        arr = np.repeat(arr[None], 3, axis=0) if arr.ndim == 2 else arr.transpose(2, 0, 1)
        top = (self.resize - self.image_size) // 2
        return np.ascontiguousarray(
            arr[:, top : top + self.image_size, top : top + self.image_size]
        )

    def embed(self, images: ImageLike | Iterable[ImageLike]) -> np.ndarray:
        """Unit descriptors ``[N, D]`` (float32) of image paths or PIL images (one or a list)."""
        if isinstance(images, (str, os.PathLike, Image.Image)):
            items = [images]
        elif isinstance(images, Iterable) and not isinstance(images, (bytes, np.ndarray)):
            items = list(images)
        else:
            raise DataError(
                f"embed() got a {type(images).__name__}: give an image path, a PIL image, or a "
                "list of them"
            )
        bad = [
            type(i).__name__ for i in items if not isinstance(i, (str, os.PathLike, Image.Image))
        ]
        if bad:
            raise DataError(f"embed() got {bad[0]} among the images: give paths or PIL images")
        if not items:
            raise DataError("embed() got no image: give a path, a PIL image, or a list of them")
        rows = []
        for start in range(0, len(items), self.batch_size):
            batch = np.stack([self.prepare(i) for i in items[start : start + self.batch_size]])
            rows.append(np.asarray(self._run(batch), dtype=np.float32))
        return np.concatenate(rows)

    def _descriptor(self, x: Any) -> np.ndarray:
        if isinstance(x, np.ndarray):  # a descriptor from embed()
            v = x.astype(np.float64).reshape(-1)
            return v / max(float(np.linalg.norm(v)), 1e-12)
        return self.embed(x)[0].astype(np.float64)

    def similarity(self, a: ImageLike | np.ndarray, b: ImageLike | np.ndarray) -> float:
        """Cosine similarity of two faces (images, or descriptors from :meth:`embed`)."""
        da, db = self._descriptor(a), self._descriptor(b)
        if da.shape != db.shape:
            raise DataError(
                f"similarity() of a {da.size}-value and a {db.size}-value descriptor: compare "
                "descriptors of the same model (or give images)"
            )
        if not (np.isfinite(da).all() and np.isfinite(db).all()):
            raise DataError(
                "similarity() of a descriptor holding NaN or infinity: give descriptors from "
                "embed() (or images)"
            )
        return float(da @ db)

    def verify(self, a: ImageLike | np.ndarray, b: ImageLike | np.ndarray) -> bool:
        """Same person? ``similarity(a, b) >= threshold`` (the model's EER threshold)."""
        if self.threshold is None:
            raise ModelError(
                "this model has no stored verification threshold (eer_threshold): give one with "
                "load_embedder(path, threshold=...)"
            )
        return self.similarity(a, b) >= self.threshold

    def __repr__(self) -> str:
        return (
            f"Embedder({self.info.get('arch', '?')}, image_size={self.image_size}, "
            f"resize={self.resize}, threshold={self.threshold})"
        )


def _decode(image: ImageLike) -> Image.Image:
    """Grayscale as ``L``, everything else as ``RGB`` (as :func:`read_image` decodes files)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if not isinstance(image, Image.Image):
        raise DataError(f"expected an image path or a PIL image, got {type(image).__name__}")
    if image.mode not in GRAYSCALE_MODES:
        return image.convert("RGB")
    if image.mode in ("1", "L", "LA", "La"):
        return image.convert("L")
    arr = np.asarray(image, dtype=np.float64)  # 16-bit by its bit depth, float as 0..255
    if image.mode != "F":
        arr = np.clip(arr, 0, 65535) * 255 / 65535
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _torch_runner(path: Path, device: str):
    import torch

    from .export import EmbeddingNet, preprocessing
    from .models import load_model

    model, meta = load_model(path)
    prep = preprocessing(meta, source=path)
    net = EmbeddingNet(model, pixel_mean=prep["pixel_mean"], pixel_std=prep["pixel_std"])
    net = net.to(device).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return net(torch.from_numpy(batch).to(device)).cpu().numpy()

    return run, {**meta, **{k: v for k, v in prep.items() if v is not None}}


def _onnx_runner(path: Path):
    from .export import check_meta

    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ModelError("reading .onnx models needs onnxruntime: pip install onnxruntime") from e
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        reason = " ".join(str(e).split())[:160]
        raise ModelError(
            f"{path} is not an ONNX model onnxruntime can load ({reason}): export it with "
            "facepruning.export_onnx"
        ) from None
    props = session.get_modelmeta().custom_metadata_map
    info = {}
    for key, value in props.items():
        try:
            info[key] = json.loads(value)
        except ValueError:
            info[key] = value
    check_meta(info, source=path)
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return run, info


def load_embedder(
    path: str | os.PathLike,
    *,
    threshold: float | None = None,
    device: str = "cpu",
    batch_size: int = 32,
) -> Embedder:
    """An :class:`Embedder` for a ``.pt`` model (PyTorch, on ``device``) or an ``.onnx`` export
    (ONNX Runtime, CPU). ``threshold`` overrides the stored ``eer_threshold`` for
    :meth:`Embedder.verify`; ``batch_size`` images are run at once."""
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{str(path)!r} is a folder: give the model file (.pt or .onnx) in it")
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found")
    if path.suffix.lower() == ".onnx":
        run, info = _onnx_runner(path)
    else:
        run, info = _torch_runner(path, device)
    stored = info.get("eer_threshold")
    return Embedder(
        run, info, threshold=stored if threshold is None else threshold, batch_size=batch_size
    )
