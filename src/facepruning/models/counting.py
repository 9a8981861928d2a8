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


def count_macs(
    model: nn.Module, example_inputs: torch.Tensor | None = None, *, image_size: int | None = None
) -> int:
    """Multiply-accumulate operations of one forward pass on one input (torch_pruning's counter).

    ``example_inputs``: a batch as the network takes it (only its first item is counted), for any
    input shape; or ``image_size`` for a ``3 x image_size x image_size`` image.
    """
    p = next(model.parameters())
    if example_inputs is not None:
        x = example_inputs[:1].detach().to(device=p.device, dtype=p.dtype)
    elif image_size is not None:
        x = torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype)
    else:
        raise ModelError("count_macs needs example_inputs (a batch) or image_size")
    with torch.no_grad():
        macs, _ = tp.utils.count_ops_and_params(model, x)
    return int(macs)
