"""The face wrapper shared by the three backbones of the two papers, and their starting weights.

The backbones (one module each, built from torchvision's definitions):

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
state-dict file downloaded elsewhere (:func:`read_weights`, :func:`load_matching`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ..errors import ModelError

__all__ = ["ARCHITECTURES", "FaceNet", "no_inplace", "read_weights", "load_matching"]

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


def no_inplace(module: nn.Module) -> None:
    # Hooks at the score points (the BatchNorm outputs) must see values that a following ReLU
    # does not overwrite in place.
    for m in module.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            m.inplace = False


def read_weights(arch: str, weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict named by ``weights`` (``"imagenet"`` or a file path), with its source
    under the key ``"__source__"``; :class:`ModelError` says what to do when it cannot be read."""
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


def load_matching(model: FaceNet, state: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the tensors of ``state`` whose name and shape match into ``model.backbone``, all but
    the classifier's; return the report ``{"source", "loaded", "skipped", "unused"}``."""
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
