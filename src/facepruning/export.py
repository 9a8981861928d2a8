"""ONNX export of a (pruned) face network as an embedding model: image in, unit descriptor out.

:func:`export_onnx` writes the network that verification uses, not the identity classifier:

- input ``images``: float32 ``[N, 3, S, S]``, raw RGB values on the 0..255 scale (the model's
  ``image_size`` S, any batch size N); the ``(x - mean) / std`` normalisation of training is
  inside the graph, so a user only resizes and crops (see the metadata);
- output ``descriptors``: float32 ``[N, D]``, L2-normalised, so the cosine similarity of two
  faces is the dot product of their descriptors.

The file's ``metadata_props`` (strings; lists as JSON) say how to prepare an image and where the
model comes from: ``image_size``, ``resize`` (shortest side before the centre crop), ``crop``
(``center``), ``pixel_mean``, ``pixel_std``, ``pixel_range``, ``channels`` (when known: 1 for
a network trained on grayscale faces), ``grayscale`` (replicate to three channels), ``arch``,
``criterion``, ``filters_removed_pct``, ``parameters``, ``descriptor_size``, and
``eer_threshold`` when the model's evaluation stored one; ``normalization`` says that the
normalisation is inside the graph (applying it again ruins every descriptor), ``interpolation``
and ``preparation`` give the resize and crops step by step (:data:`PREPARATION`).

The same model gives the same bytes (no paths, dates or doc strings in the file), and the file
is written atomically (:mod:`facepruning.artifacts`). Export needs the ``onnx`` package.
"""

from __future__ import annotations

import copy
import io
import json
import math
import numbers
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from . import __version__, artifacts
from .errors import ModelError
from .models import FaceNet, count_parameters

__all__ = ["EmbeddingNet", "export_onnx", "preprocessing", "onnx_metadata"]

#: the ONNX opsets the TorchScript exporter writes for these networks
OPSETS = (11, 20)
INPUT_NAME = "images"
OUTPUT_NAME = "descriptors"
_REQUIRED = ("image_size", "pixel_mean", "pixel_std")


class EmbeddingNet(nn.Module):
    """``FaceNet.embed`` with the input normalisation in front and L2 normalisation behind:
    raw 0..255 RGB ``[N, 3, S, S]`` -> unit descriptors ``[N, D]``."""

    def __init__(self, model: FaceNet, *, pixel_mean: Any, pixel_std: Any) -> None:
        super().__init__()
        self.model = model
        mean = torch.as_tensor(pixel_mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(pixel_std, dtype=torch.float32).flatten()
        self.register_buffer("mean", mean.expand(3).reshape(1, 3, 1, 1).clone())
        self.register_buffer("std", std.expand(3).reshape(1, 3, 1, 1).clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.embed((images - self.mean) / self.std), dim=1)


def preprocessing(meta: Mapping[str, Any], *, source: Any = "the model") -> dict[str, Any]:
    """The image preparation a model expects, from its saved meta (:class:`ModelError` names
    ``source`` and what is missing or unusable)."""
    missing = [k for k in _REQUIRED if meta.get(k) is None]
    if missing:
        raise ModelError(
            f"{source}: the model's meta lacks {missing}: pass meta={{'image_size': ..., "
            "'pixel_mean': [r, g, b], 'pixel_std': [r, g, b]}} (0..255 scale), as the train "
            "stage stores them"
        )
    check_meta(meta, source=source)
    size = int(meta["image_size"])
    return {
        "image_size": size,
        "resize": int(meta.get("resize") or size),
        "crop": "center",
        "pixel_mean": [float(v) for v in torch.as_tensor(meta["pixel_mean"]).flatten()],
        "pixel_std": [float(v) for v in torch.as_tensor(meta["pixel_std"]).flatten()],
        "pixel_range": "RGB float 0..255, NCHW",
        "channels": int(meta["channels"]) if meta.get("channels") else None,
        "grayscale": "replicate to 3 channels",
    }


def check_meta(meta: Mapping[str, Any], *, source: Any) -> None:
    """Refuse, in one line naming ``source``, a saved meta (a ``.pt``'s or an ONNX file's
    metadata) whose preprocessing or threshold values cannot be used as they are."""

    def finite(value: Any) -> bool:
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            return False
        try:
            return math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            return False

    def whole(value: Any) -> bool:
        return finite(value) and float(value).is_integer()

    def refuse(key: str, expected: str) -> ModelError:
        shown = repr(meta.get(key))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return ModelError(
            f"{source} has an unusable {key} in its metadata ({shown}; expected {expected}): "
            "export or save the model again with facepruning"
        )

    size = meta.get("image_size")
    if not (whole(size) and 8 <= size <= 4096):
        raise refuse("image_size", "a whole number of pixels from 8 to 4096")
    resize = meta.get("resize")
    if resize is not None and not (whole(resize) and resize >= size):
        raise refuse("resize", f"a whole number of pixels, at least image_size {size}")
    threshold = meta.get("eer_threshold")
    if threshold is not None and not finite(threshold):
        raise refuse("eer_threshold", "a finite number")
    for key in ("pixel_mean", "pixel_std"):
        if meta.get(key) is None:
            continue
        try:
            flat = torch.as_tensor(meta[key], dtype=torch.float64).flatten().tolist()
        except (TypeError, ValueError, RuntimeError, OverflowError):
            flat = []
        if len(flat) not in (1, 3) or not all(math.isfinite(v) for v in flat):
            raise refuse(key, "one or three finite numbers")
        if key == "pixel_std" and min(flat) <= 0:
            raise refuse(key, "positive numbers")


#: How to turn a face crop into the input, in the metadata (``preparation``) so that a user of
#: the file alone computes what :func:`facepruning.load_embedder` computes.
PREPARATION = (
    "1. resize so that the shortest side is `resize` pixels (long side round(side * scale), at "
    "least `resize`), `interpolation`; 2. keep the central `resize` square (offset "
    "(side - resize) // 2); 3. if `channels` is 1 or the image is grayscale, convert to one "
    "intensity channel (PIL 'L') and replicate it to three; 4. keep the central `image_size` "
    "square (offset (resize - image_size) // 2); 5. float32 0..255, NCHW, RGB order; the "
    "normalisation is inside the graph"
)


def onnx_metadata(model: FaceNet, meta: Mapping[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` of the exported file: preprocessing and provenance, as strings."""
    values = {
        **preprocessing(meta),
        "arch": model.arch,
        "criterion": meta.get("criterion"),
        "filters_removed_pct": meta.get("filters_removed_pct"),
        "parameters": count_parameters(model),
        "descriptor_size": model.descriptor_size,
        "num_classes": model.num_classes,
        "eer_threshold": meta.get("eer_threshold"),
        "input": f"{INPUT_NAME}: float32 [N, 3, image_size, image_size], pixels 0..255",
        "normalization": "inside the graph: (x - pixel_mean) / pixel_std; do not apply it again",
        "interpolation": "bilinear (PIL Image.resize, reducing_gap=3.0)",
        "preparation": PREPARATION,
        "output": f"{OUTPUT_NAME} (L2-normalised; cosine similarity = dot product)",
        "facepruning_version": __version__,
    }
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(artifacts.jsonable(value))
    return out


def _resolve(model_or_path: Any, meta: Mapping[str, Any] | None) -> tuple[FaceNet, dict]:
    if isinstance(model_or_path, (str, os.PathLike)):
        from .models import load_model  # torch loads only when needed

        model, saved = load_model(model_or_path)
        merged = {**saved, **(meta or {})}
        check_meta(merged, source=model_or_path)
        return model, merged
    if not isinstance(model_or_path, FaceNet):
        raise ModelError(
            f"export_onnx needs a FaceNet or a save_model() file, not "
            f"{type(model_or_path).__name__}"
        )
    return model_or_path, dict(meta or {})


def onnx_bytes(net: nn.Module, size: int, opset: int = 17) -> bytes:
    """ONNX bytes of ``net`` on ``3 x size x size`` inputs named ``images``, with a dynamic batch
    dimension and no metadata (what :func:`export_onnx` writes, before its metadata)."""
    buffer = io.BytesIO()
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        # torch >= 2.9 defaults to the torch.export-based exporter, which needs onnxscript; the
        # TorchScript exporter handles these CNNs and warns that it is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return buffer.getvalue()


def _finish(data: bytes, metadata: Mapping[str, str]) -> bytes:
    """Add the metadata and drop every doc string (they can carry source paths)."""
    try:
        import onnx
    except ImportError as e:
        raise ModelError("ONNX export needs the onnx package: pip install onnx") from e
    proto = onnx.load_from_string(data)
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    del proto.metadata_props[:]
    for key, value in sorted(metadata.items()):
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


def export_onnx(
    model_path_or_model: str | os.PathLike | FaceNet,
    out_path: str | os.PathLike,
    *,
    meta: Mapping[str, Any] | None = None,
    opset: int = 17,
) -> dict[str, str]:
    """Write the embedding network of a :func:`~facepruning.pruning.save_model` file (or of a
    :class:`FaceNet`) to ``out_path`` as ONNX; return the metadata written into it.

    ``meta`` adds to (or, for a model object, gives) the saved meta: ``image_size``,
    ``pixel_mean`` and ``pixel_std`` are required, ``resize``, ``channels``, ``criterion``,
    ``filters_removed_pct`` and ``eer_threshold`` are passed on when present. The model itself
    is not changed (a CPU float32 copy in eval mode is exported).
    """
    if isinstance(opset, bool) or not isinstance(opset, int) or not OPSETS[0] <= opset <= OPSETS[1]:
        raise ModelError(
            f"opset={opset!r}: the exporter writes ONNX opsets {OPSETS[0]} to {OPSETS[1]}; the "
            "default 17 suits every current runtime"
        )
    out = Path(out_path)
    if out.is_dir():
        raise ModelError(f"{out} is a folder: give the ONNX file's path, e.g. {out / 'model.onnx'}")
    model, full_meta = _resolve(model_path_or_model, meta)
    metadata = onnx_metadata(model, full_meta)
    prep = preprocessing(full_meta)
    net = EmbeddingNet(
        copy.deepcopy(model).cpu().float().eval(),
        pixel_mean=prep["pixel_mean"],
        pixel_std=prep["pixel_std"],
    ).eval()
    data = _finish(onnx_bytes(net, prep["image_size"], opset), metadata)
    artifacts.write_bytes(out_path, data)
    return metadata
