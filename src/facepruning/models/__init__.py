"""The three face-recognition backbones of the two papers, one module per architecture.

Laid out like torchvision's ``models`` package:

- :mod:`.squeezenet`: SqueezeNet 1.1 (Iandola et al. 2016) with a BatchNorm after every
  convolution and a stride-1 stem for small face crops (SqueezerFaceNet, arXiv 2307.10697;
  Deep Network Pruning: A Comparative Study on CNNs in Face Recognition, arXiv 2405.18302);
- :mod:`.mobilenet_v2`: MobileNetV2 (Sandler et al. 2018), classifier resized to the identities;
- :mod:`.resnet50`: ResNet50 (He et al. 2016), ``fc`` resized to the identities;
- :mod:`.facenet`: :class:`FaceNet`, the wrapper that gives every backbone one interface
  (identity logits, face descriptor, the classifier pruning must not touch), and the loading
  of torchvision's ImageNet weights;
- :mod:`.build`: :func:`build_model`, any architecture by name, from scratch or from weights;
- :mod:`.counting`: :func:`count_parameters` and :func:`count_macs`;
- :mod:`.io`: saving and loading pruned networks as state dict plus channel layout
  (:func:`save_model` / :func:`load_model` for a FaceNet, :func:`save_pruned` /
  :func:`load_pruned` for any network).

Every public name of the former single ``models`` module is re-exported here. The builder
functions share their names with their modules: ``facepruning.models.squeezenet`` is the
function; import the module's other names from it (``from facepruning.models.squeezenet import
BNFire``).
"""

from __future__ import annotations

from .build import build_model
from .counting import count_macs, count_parameters
from .facenet import ARCHITECTURES, FaceNet
from .io import (
    apply_pruned_state,
    channel_layout,
    load_model,
    load_pruned,
    pruned_state,
    save_model,
    save_pruned,
)
from .mobilenet_v2 import mobilenet_v2
from .resnet50 import resnet50
from .squeezenet import BNFire, squeezenet

__all__ = [
    "ARCHITECTURES",
    "FaceNet",
    "BNFire",
    "squeezenet",
    "mobilenet_v2",
    "resnet50",
    "build_model",
    "count_parameters",
    "count_macs",
    "channel_layout",
    "pruned_state",
    "apply_pruned_state",
    "save_pruned",
    "load_pruned",
    "save_model",
    "load_model",
]
