"""ResNet50 for faces: torchvision's network with ``fc`` resized to the identities.

ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv 1512.03385); used for faces in arXiv 2405.18302.
"""

from __future__ import annotations

import torchvision

from .facenet import FaceNet, no_inplace

__all__ = ["resnet50"]


def resnet50(*, num_classes: int) -> FaceNet:
    """ResNet50 (He et al. 2016, arXiv 1512.03385; torchvision's definition) with a
    ``num_classes`` Linear ``fc`` (arXiv 2405.18302).

    Descriptor: the 2048 globally pooled features before ``fc``. 25.6M parameters with 1000
    classes, 23.5M without the classifier (the figure the paper quotes).
    """
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    no_inplace(net)
    return FaceNet(net, arch="resnet50", num_classes=num_classes, config={})
