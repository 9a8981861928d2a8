"""Tiny synthetic face sets for fast tests of training, scoring and pruning (no files)."""

from __future__ import annotations

import contextlib
import logging
import re

import torch
from torch import nn
from torch.utils.data import Dataset

from facepruning.data import BatchTransform


class TinyFaces(Dataset):
    """``n_classes`` identities, each a fixed random uint8 pattern plus noise, 1x`size`x`size`."""

    def __init__(self, *, n_classes=4, per_class=6, size=20, seed=0):
        g = torch.Generator().manual_seed(seed)
        base = torch.randint(0, 256, (n_classes, 1, size, size), generator=g).float()
        noise = torch.randn(n_classes * per_class, 1, size, size, generator=g) * 30
        labels = torch.arange(n_classes).repeat_interleave(per_class)
        self.images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i]), i


def transforms(image_size=16):
    common = {"image_size": image_size, "mean": 127.5, "std": 64.0}
    return BatchTransform(train=True, **common), BatchTransform(train=False, **common)


def randomise_batchnorm(model: nn.Module, *, bias_std: float, mean_std: float) -> nn.Module:
    """Random BatchNorm scales, shifts and running statistics (from torch's global generator), so
    that masking or removing a channel changes what the network computes."""
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, bias_std)
            bn.running_mean.normal_(0.0, mean_std)
            bn.running_var.uniform_(0.5, 2.0)
    return model


@contextlib.contextmanager
def logs(pattern: str = ""):
    """Like ``pytest.warns(match=...)`` for the package's log messages: the block must log a
    warning or info line matching ``pattern`` (any line when empty) to the ``facepruning``
    logger."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("facepruning")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
    said = [r.getMessage() for r in records]
    assert said and any(re.search(pattern, m) for m in said), f"no message like {pattern!r}: {said}"
