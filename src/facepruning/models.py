"""The three face-recognition backbones of the two papers, built from torchvision's definitions.

- SqueezeNet 1.1 with a BatchNorm between every convolution and its ReLU and the first
  convolution's stride set to 1 for the small face crops (SqueezerFaceNet, arXiv 2307.10697;
  Deep Network Pruning: A Comparative Study on CNNs in Face Recognition, arXiv 2405.18302).
- MobileNetV2 and ResNet50 as in torchvision, with the classifier resized to the number of
  training identities (arXiv 2405.18302).

Every network is wrapped in :class:`FaceNet`, which gives one interface to the rest of the
package: ``forward(x)`` returns identity logits (softmax cross-entropy training), ``embed(x)``
returns the face descriptor used for verification (the output of the global-average-pooling
layer next to the classifier, not normalised), and ``classifier_modules()`` names the layers
that pruning must never touch.

Input is always three channels. Grayscale images are replicated to three channels in the data
transform (``loaders.BatchTransform``), which keeps the stem compatible with ImageNet weights.

The papers start from ImageNet weights. No package registry ships them for offline use, so the
default here is training from scratch (``weights=None``); ``weights="imagenet"`` uses
torchvision's download where one is possible, and ``weights=<path>`` loads a torchvision
state-dict file downloaded elsewhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.nn import init
from torchvision.models.squeezenet import Fire

from .errors import ModelError

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
]

log = logging.getLogger(__name__)

ARCHITECTURES = ("squeezenet", "mobilenet_v2", "resnet50")

#: torchvision weights used by ``weights="imagenet"`` (the original ImageNet-1k releases).
_IMAGENET_WEIGHTS = {
    "squeezenet": "SqueezeNet1_1_Weights.IMAGENET1K_V1",
    "mobilenet_v2": "MobileNet_V2_Weights.IMAGENET1K_V1",
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
}


class FaceNet(nn.Module):
    """A backbone trained for face identification, also used as a face descriptor extractor.

    ``backbone`` is the (modified) torchvision model; its module names are kept under
    ``backbone.`` so torchvision state dicts map onto it. ``forward(x)`` returns identity logits
    ``[B, num_classes]``; ``embed(x)`` returns the descriptor, the output of the global average
    pooling next to the classifier (as in arXiv 2307.10697 and 2405.18302):

    - SqueezeNet: pool10, the pooling after conv10 (the identity classifier conv + BN + ReLU), so
      the descriptor IS the logits tensor (``num_classes`` values, non-negative after the ReLU);
    - MobileNetV2: the pooled 1280 features before the Linear classifier;
    - ResNet50: the pooled 2048 features before ``fc``.

    The descriptor width of MobileNetV2 and ResNet50 shrinks when the last stage is pruned;
    ``descriptor_size`` reads the current width.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        arch: str,
        num_classes: int,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ModelError(f"unknown architecture {arch!r}: choose one of {ARCHITECTURES}")
        self.backbone = backbone
        self.arch = arch
        self.num_classes = int(num_classes)
        #: keyword arguments that rebuild the same unpruned network with ``build_model``
        self.config = dict(config or {})
        #: what ``build_model(weights=...)`` loaded and skipped (empty when built from scratch)
        self.weights_report: dict[str, Any] = {}

    def classifier_modules(self) -> list[nn.Module]:
        """The identity classifier: never pruned (its outputs are the identities)."""
        b = self.backbone
        if self.arch == "squeezenet":
            return [b.classifier[1], b.classifier[2]]  # conv10 and its BatchNorm
        if self.arch == "mobilenet_v2":
            return [b.classifier[1]]
        return [b.fc]

    @property
    def descriptor_size(self) -> int:
        """Width of ``embed(x)`` for the current (possibly pruned) network."""
        b = self.backbone
        if self.arch == "squeezenet":
            return b.classifier[1].out_channels
        if self.arch == "mobilenet_v2":
            return b.classifier[1].in_features
        return b.fc.in_features

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Face descriptor ``[B, D]``: the global-average-pooling output, not normalised."""
        b = self.backbone
        if self.arch == "squeezenet":
            return torch.flatten(b.classifier(b.features(x)), 1)
        if self.arch == "mobilenet_v2":
            x = b.features(x)
            return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return torch.flatten(b.avgpool(x), 1)

    def classify(self, descriptor: torch.Tensor) -> torch.Tensor:
        """Identity logits from a descriptor (the identity for SqueezeNet, whose descriptor is
        the logits)."""
        if self.arch == "squeezenet":
            return descriptor
        if self.arch == "mobilenet_v2":
            return self.backbone.classifier(descriptor)
        return self.backbone.fc(descriptor)

    def embed_and_classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(descriptor, logits)`` from one forward pass."""
        d = self.embed(x)
        return d, self.classify(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Identity logits ``[B, num_classes]``."""
        return self.classify(self.embed(x))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}"


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


def _no_inplace(module: nn.Module) -> None:
    # Hooks at the score points (the BatchNorm outputs) must see values that a following ReLU
    # does not overwrite in place.
    for m in module.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False


def squeezenet(*, num_classes: int, first_stride: int = 1, dropout: float = 0.5) -> FaceNet:
    """SqueezeNet 1.1 as modified in arXiv 2307.10697 and 2405.18302.

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
    net.features = nn.Sequential(
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
    _no_inplace(net)
    config = {"first_stride": first_stride, "dropout": dropout}
    return FaceNet(net, arch="squeezenet", num_classes=num_classes, config=config)


def mobilenet_v2(*, num_classes: int, dropout: float = 0.2) -> FaceNet:
    """MobileNetV2 (torchvision) with a ``num_classes`` Linear classifier (arXiv 2405.18302).

    Descriptor: the 1280 globally pooled features before the classifier. About 3.5M parameters
    with 1000 classes.
    """
    net = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes, dropout=dropout)
    _no_inplace(net)
    return FaceNet(net, arch="mobilenet_v2", num_classes=num_classes, config={"dropout": dropout})


def resnet50(*, num_classes: int) -> FaceNet:
    """ResNet50 (torchvision) with a ``num_classes`` Linear ``fc`` (arXiv 2405.18302).

    Descriptor: the 2048 globally pooled features before ``fc``. 25.6M parameters with 1000
    classes, 23.5M without the classifier (the figure the paper quotes).
    """
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    _no_inplace(net)
    return FaceNet(net, arch="resnet50", num_classes=num_classes, config={})


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
        state = _read_weights(arch, weights)
        model.weights_report = _load_matching(model, state)
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


def _read_weights(arch: str, weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    if isinstance(weights, str) and weights == "imagenet":
        enum_name, member = _IMAGENET_WEIGHTS[arch].split(".")
        w = getattr(getattr(torchvision.models, enum_name), member)
        try:
            state = w.get_state_dict(progress=False)
        except Exception as e:  # no network, proxy, hash mismatch, ...
            raise ModelError(
                f"could not download torchvision's ImageNet weights for {arch} ({e}). Download "
                f"{w.url} on a machine with internet access and pass its path as weights=..."
            ) from e
        return {"__source__": w.url, **state}
    if not isinstance(weights, (str, os.PathLike)):
        raise ModelError(
            f"weights must be None, 'imagenet' or a file path, not {type(weights).__name__}"
        )
    path = Path(weights)
    if not path.is_file():
        raise ModelError(
            f"weights file {str(path)!r} not found: pass None (from scratch), 'imagenet', or "
            f"the path of a torchvision state-dict file (e.g. {_IMAGENET_WEIGHTS[arch]})"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"cannot read {path} as a weights-only torch file: {e}") from e
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ModelError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {"__source__": str(path), **state}


def _squeezenet_key(key: str) -> str:
    # torchvision features: conv(0) relu(1) pool(2) fire(3..); ours insert a BatchNorm at 1.
    parts = key.split(".")
    if parts[0] == "features" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= 1:
        parts[1] = str(int(parts[1]) + 1)
    return ".".join(parts)


def _load_matching(model: FaceNet, state: Mapping[str, Any]) -> dict[str, Any]:
    source = state.get("__source__", "?")
    src = {}
    for k, v in state.items():
        if k == "__source__" or not isinstance(v, torch.Tensor):
            continue
        k = k.removeprefix("module.").removeprefix("backbone.")
        src[_squeezenet_key(k) if model.arch == "squeezenet" else k] = v
    names = {m: n for n, m in model.backbone.named_modules()}
    head = tuple(names[m] + "." for m in model.classifier_modules())
    target = model.backbone.state_dict()
    loaded, skipped = [], {}
    new_state = {}
    for key, t in target.items():
        if key.startswith(head):
            skipped[key] = "classifier (re-initialised for the face identities)"
        elif key not in src:
            if not key.endswith("num_batches_tracked"):
                skipped[key] = "not in the file (layer absent from torchvision's model)"
        elif tuple(src[key].shape) != tuple(t.shape):
            skipped[key] = f"shape {tuple(src[key].shape)} in the file, {tuple(t.shape)} here"
        else:
            new_state[key] = src[key].to(t.dtype)
            loaded.append(key)
    unused = sorted(set(src) - set(target))
    if not loaded:
        raise ModelError(
            f"no tensor of {source} fits {model.arch}: is it a torchvision {model.arch} state dict?"
        )
    model.backbone.load_state_dict(new_state, strict=False)
    return {"source": source, "loaded": loaded, "skipped": skipped, "unused": unused}


def count_parameters(model: nn.Module, *, include_classifier: bool = True) -> int:
    """Number of parameters; ``include_classifier=False`` leaves out ``classifier_modules()``."""
    total = sum(p.numel() for p in model.parameters())
    if include_classifier:
        return total
    if not hasattr(model, "classifier_modules"):
        raise ModelError("include_classifier=False needs a FaceNet (with classifier_modules())")
    seen = set()
    for m in model.classifier_modules():
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total -= p.numel()
    return total


def count_macs(model: nn.Module, *, image_size: int) -> int:
    """Multiply-accumulate operations of one forward pass on a ``3 x image_size x image_size``
    image (torch_pruning's counter, on a copy of the model)."""
    p = next(model.parameters())
    x = torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype)
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, x)
    return int(macs)
