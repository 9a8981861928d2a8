"""SqueezeNet 1.1 for faces, as modified by the two papers.

SqueezeNet: Iandola, Han, Moskewicz, Ashraf, Dally and Keutzer, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size", arXiv 1602.07360 (2016); version 1.1
is torchvision's ``squeezenet1_1``. The face variant puts a BatchNorm between every convolution
and its ReLU and sets the first convolution's stride to 1 for the small face crops
(SqueezerFaceNet, arXiv 2307.10697; Deep Network Pruning: A Comparative Study on CNNs in Face
Recognition, arXiv 2405.18302).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import init
from torchvision.models.squeezenet import Fire

from ..errors import ModelError
from .facenet import FaceNet, no_inplace

__all__ = ["BNFire", "squeezenet"]


class BNFire(Fire):
    """torchvision's Fire module with a BatchNorm between each convolution and its ReLU.

    The convolutions keep torchvision's names (``squeeze``, ``expand1x1``, ``expand3x3``) so
    ImageNet weights load onto them; the BatchNorms are ``squeeze_bn``, ``expand1x1_bn``,
    ``expand3x3_bn``. The output is the concatenation ``[expand1x1, expand3x3]`` along channels.
    """

    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ) -> None:
        super().__init__(inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes)
        self.squeeze_bn = nn.BatchNorm2d(squeeze_planes)
        self.expand1x1_bn = nn.BatchNorm2d(expand1x1_planes)
        self.expand3x3_bn = nn.BatchNorm2d(expand3x3_planes)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1_activation = nn.ReLU()
        self.expand3x3_activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(x))),
                self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(x))),
            ],
            1,
        )


def _features(first_stride: int) -> nn.Sequential:
    # conv1, bn1, relu, maxpool, fire2, fire3, maxpool, fire4, fire5, maxpool, fire6..fire9
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=3, stride=first_stride),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        BNFire(64, 16, 64, 64),
        BNFire(128, 16, 64, 64),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        BNFire(128, 32, 128, 128),
        BNFire(256, 32, 128, 128),
        nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        BNFire(256, 48, 192, 192),
        BNFire(384, 48, 192, 192),
        BNFire(384, 64, 256, 256),
        BNFire(512, 64, 256, 256),
    )


def squeezenet(*, num_classes: int, first_stride: int = 1, dropout: float = 0.5) -> FaceNet:
    """SqueezeNet 1.1 (Iandola et al. 2016, arXiv 1602.07360) as modified in arXiv 2307.10697
    and 2405.18302.

    Built from torchvision's ``squeezenet1_1``: a BatchNorm between every convolution and its
    ReLU (the stem, every squeeze/expand convolution of the Fire modules, and the classifier
    conv); the first convolution's stride is ``first_stride`` (1 in the papers for the 113x113
    face crops; torchvision uses 2). The identity classifier is conv10 (1x1, 512 ->
    ``num_classes``) + BN + ReLU followed by global average pooling; the descriptor is that
    pooling's output (pool10), so logits and descriptor are the same tensor.

    Layout: ``backbone.features`` = conv1, bn1, relu, maxpool, fire2, fire3, maxpool, fire4,
    fire5, maxpool, fire6..fire9 (indices 0..13); ``backbone.classifier`` = dropout, conv10,
    bn10, relu, avgpool (indices 0..4). About 1.24M parameters with 1000 classes.
    """
    if first_stride not in (1, 2):
        raise ModelError(
            f"first_stride must be 1 (the papers) or 2 (torchvision), not {first_stride}"
        )
    net = torchvision.models.squeezenet1_1(weights=None, num_classes=num_classes, dropout=dropout)
    net.features = _features(first_stride)
    final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
    net.classifier = nn.Sequential(
        nn.Dropout(p=dropout),
        final_conv,
        nn.BatchNorm2d(num_classes),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d((1, 1)),
    )
    # torchvision's initialisation: Kaiming-uniform convolutions, small normal final conv.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            if m is final_conv:
                init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                init.constant_(m.bias, 0)
    no_inplace(net)
    config = {"first_stride": first_stride, "dropout": dropout}
    return FaceNet(net, arch="squeezenet", num_classes=num_classes, config=config)
