"""One entry point for every backbone: :func:`build_model` by architecture name.

Like torchvision's ``get_model``: it looks the builder up by name, checks the arguments, and
optionally loads starting weights (:func:`~facepruning.models.facenet.read_weights`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import ModelError
from .facenet import ARCHITECTURES, FaceNet, load_matching, read_weights
from .mobilenet_v2 import mobilenet_v2
from .resnet50 import resnet50
from .squeezenet import squeezenet

__all__ = ["build_model"]

log = logging.getLogger(__name__)

_BUILDERS = {"squeezenet": squeezenet, "mobilenet_v2": mobilenet_v2, "resnet50": resnet50}


def build_model(
    arch: str,
    *,
    num_classes: int,
    weights: str | os.PathLike | None = None,
    **kwargs: Any,
) -> FaceNet:
    """Build one of :data:`ARCHITECTURES` for ``num_classes`` identities.

    ``kwargs`` go to the builder (``first_stride``, ``dropout`` for SqueezeNet; ``dropout`` for
    MobileNetV2). ``weights`` chooses the initialisation of everything but the classifier:

    - ``None`` (default): from scratch, torchvision's initialisation;
    - ``"imagenet"``: torchvision's ImageNet-1k weights (IMAGENET1K_V1) through its download,
      which needs internet access; without it a :class:`ModelError` says which file to fetch;
    - a path to a torchvision state-dict file (``torch.load(weights_only=True)``).

    Tensors are copied where name and shape match; the classifier, and for SqueezeNet the
    BatchNorms torchvision's model lacks, keep their initialisation. What was loaded and what
    was skipped (and why) is logged and kept in ``model.weights_report``.

    Grayscale input is replicated to three channels by the data transform, so the RGB stem
    (and ImageNet weights) are used unchanged.
    """
    if arch not in _BUILDERS:
        raise ModelError(f"unknown architecture {arch!r}: choose one of {ARCHITECTURES}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, not {num_classes!r}")
    try:
        model = _BUILDERS[arch](num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise ModelError(f"bad keyword arguments for {arch}: {e}") from e
    if weights is not None:
        model.weights_report = load_matching(model, read_weights(arch, weights))
        rep = model.weights_report
        log.info(
            "%s: loaded %d tensors from %s; skipped %d: %s",
            arch,
            len(rep["loaded"]),
            rep["source"],
            len(rep["skipped"]),
            rep["skipped"],
        )
    return model
