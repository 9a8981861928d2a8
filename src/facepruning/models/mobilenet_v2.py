"""MobileNetV2 for faces: torchvision's network with the classifier resized to the identities.

MobileNetV2: Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018 (arXiv 1801.04381); used for faces in arXiv 2405.18302.
"""

from __future__ import annotations

import torchvision

from .facenet import FaceNet, no_inplace

__all__ = ["mobilenet_v2"]


def mobilenet_v2(*, num_classes: int, dropout: float = 0.2) -> FaceNet:
    """MobileNetV2 (Sandler et al. 2018, arXiv 1801.04381; torchvision's definition) with a
    ``num_classes`` Linear classifier (arXiv 2405.18302).

    Descriptor: the 1280 globally pooled features before the classifier. About 3.5M parameters
    with 1000 classes.
    """
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes, dropout=dropout)
    no_inplace(net)
    return FaceNet(net, arch="mobilenet_v2", num_classes=num_classes, config={"dropout": dropout})
