"""Size of a network: parameters (with or without the identity classifier) and MACs per image."""

from __future__ import annotations

import torch
import torch_pruning as tp
from torch import nn

from ..errors import ModelError

__all__ = ["count_parameters", "count_macs"]


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
