"""Filter importance: the criteria that decide which channels the pruning loop removes.

Scores are kept per :class:`~facepruning.pruning.surgery.ChannelGroup` (channels that must be
removed together) as one value per channel; the lower, the less the loss is expected to change
when the channel goes.

``taylor_activation`` (default)
    Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference",
    ICLR 2017, the criterion of MATLAB's ``taylorPrunableNetwork`` that the papers used. Removing
    channel ``c`` sets its feature map ``a`` to zero; to first order the loss changes by
    ``dL = -sum_{h,w} a * dL/da``. Per image the score is ``|mean_{h,w} a * dL/da|``, averaged
    over the images of all mini-batches of one pruning step. ``a`` is read where the channel's
    output leaves its producer (after the BatchNorm that follows the conv), because that is what
    removal zeroes.
``taylor_weight``
    Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019: per channel,
    ``(sum_s w_s * dL/dw_s)^2`` over every parameter ``s`` that the channel owns (its conv
    filters and BatchNorm scale and shift), averaged over mini-batches.
``l1_norm``
    Li et al., ICLR 2017: the sum of absolute filter weights. Data-free baseline.
``random``
    Uniform random scores in [0, 1) for every prunable channel: the baseline any criterion must
    beat. They are never normalised per group (``normalize`` is ignored): dividing by a group's
    L2 norm, about ``sqrt(width / 3)``, would make the channels of wide layers look weaker and
    removal would no longer be uniform over channels.

``none``
    No criterion: the no-pruning control. Its loop trains, recalibrates and fine-tunes exactly as
    a pruning run does, and removes nothing, so "pruned vs original" can be read against
    "equally trained vs original". All its scores are 0.

How well the first-order estimate predicts what removal does is checked on one group and one
mini-batch by :func:`taylor_prediction_check` (notebook 03's worked example).

A group with several producers (a residual stream written by several blocks, MobileNetV2's
expansion conv tied to its depthwise conv) gets the sum of its members' scores: removing one of
its channels removes all of them at once, and first-order effects add.

Scores come from hooks on the model itself (no copy of the network). The activation hook keeps a
copy of the feature map (not a view: torchvision's Bottleneck adds its identity in place into
``bn3``'s output, ``out += identity``, and an in-place ReLU would overwrite it too, so a view read
at backward time holds the modified values) only until its gradient arrives in the same backward
pass, so memory does not grow with the number of mini-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PruningError
from ..parameters import CRITERIA
from .surgery import ChannelGroup, zero_channels

__all__ = [
    "CRITERIA",
    "ImportanceAccumulator",
    "normalize_per_group",
    "TaylorCheck",
    "taylor_prediction_check",
]


class ImportanceAccumulator:
    """Accumulate per-channel importance for each group over the mini-batches of one step.

    Use as a context manager around the mini-batches (it registers and removes the hooks), call
    :meth:`after_backward` after each ``loss.backward()`` and before the optimiser step, then read
    :meth:`scores`::

        with ImportanceAccumulator(model, groups, criterion="taylor_activation") as acc:
            for x, y in batches:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                acc.after_backward()
                optimizer.step(); optimizer.zero_grad()
        scores = acc.scores()
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        *,
        criterion: str = "taylor_activation",
        generator: torch.Generator | None = None,
    ):
        if criterion not in CRITERIA:
            raise PruningError(f"unknown criterion {criterion!r}; choose one of {CRITERIA}")
        self.model = model
        self.groups = list(groups)
        self.criterion = criterion
        self.generator = generator
        self._modules = dict(model.named_modules())
        self._sums = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in self.groups}
        self._count = 0  # images (activation criterion) or mini-batches (the others)
        self._batch_size = 0
        self._handles: list = []
        # Turns the gradient of the loss into per-image loss gradients. None: the loss is a mean
        # over the batch, so the factor is the batch size. Data-parallel training sets it per
        # batch (set_grad_scale) because its loss is scaled to the global batch.
        self.grad_scale: float | None = None

    # -- hooks -------------------------------------------------------------------------------
    def __enter__(self) -> ImportanceAccumulator:
        if self.criterion == "taylor_activation":
            for group in self.groups:
                for name in group.score_points:
                    module = self._modules[name]
                    self._handles.append(module.register_forward_hook(self._forward_hook(group)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward_hook(self, group: ChannelGroup):
        sums = self._sums

        def hook(module, inputs, output):
            if not (torch.is_grad_enabled() and output.requires_grad):
                return
            # A copy, not output.detach(): a view shares storage with output, which later layers
            # may modify in place (Bottleneck's ``out += identity``, an in-place ReLU) before the
            # gradient arrives. The gradient hook below gets dL/d(output) as it was here.
            activation = output.detach().clone()
            self._batch_size = output.shape[0]

            def on_grad(grad):
                # The loss is a mean over the batch: scale back to per-image loss gradients so
                # that scores do not depend on the batch size.
                scale = grad.shape[0] if self.grad_scale is None else self.grad_scale
                contrib = (activation * grad).mean(dim=(2, 3)) * scale
                sums[group.name] += contrib.abs().sum(dim=0).double().cpu()

            output.register_hook(on_grad)

        return hook

    def after_backward(self) -> None:
        """Read what this mini-batch contributes; call after backward, before the step."""
        if self.criterion == "taylor_activation":
            self._count += self._batch_size
        elif self.criterion == "taylor_weight":
            for group in self.groups:
                self._sums[group.name] += self._weight_taylor(group)
            self._count += 1
        else:
            self._count += 1

    def _weight_taylor(self, group: ChannelGroup) -> torch.Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)  # float64: terms cancel in the sum
        for name in dict.fromkeys((*group.convs, *group.score_points)):  # conv, then its BN
            module = self._modules[name]
            for param in (module.weight, getattr(module, "bias", None)):
                if param is None or param.grad is None:
                    continue
                total += (param.detach() * param.grad).reshape(group.size, -1).sum(1).double().cpu()
        return total.pow(2)

    # -- results -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._count

    def raw_sums(self) -> dict[str, torch.Tensor]:
        """The un-normalised sums and the count: what ranks add up in distributed scoring."""
        return {name: s.clone() for name, s in self._sums.items()}

    def load_raw_sums(self, sums: dict[str, torch.Tensor], *, count: int) -> None:
        """Replace the sums and the count, e.g. by their totals over ranks (the inverse of
        :meth:`raw_sums`; distributed scoring sums both before ranking)."""
        if set(sums) != set(self._sums):
            raise PruningError(f"sums for groups {sorted(sums)}, expected {sorted(self._sums)}")
        for name, s in sums.items():
            if s.shape != self._sums[name].shape:
                raise PruningError(
                    f"{name}: {tuple(s.shape)} sums for {len(self._sums[name])} channels"
                )
            self._sums[name] = s.detach().to(torch.float64).cpu().clone()
        self._count = int(count)

    def set_grad_scale(self, scale: float | None) -> None:
        """Set :attr:`grad_scale` for the next backward pass (None: the batch size)."""
        self.grad_scale = scale

    def scores(self, *, normalize: bool = False) -> dict[str, torch.Tensor]:
        """Per-group channel scores (float64); ``normalize`` divides each group by its L2 norm.

        ``random`` scores are uniform draws over all prunable channels and are returned as drawn
        whatever ``normalize`` says: normalising them would favour removing wide layers.
        """
        if self.criterion == "none":
            return {g.name: torch.zeros(g.size, dtype=torch.float64) for g in self.groups}
        if self.criterion == "random":
            return {
                g.name: torch.rand(g.size, generator=self.generator, dtype=torch.float64)
                for g in self.groups
            }
        if self.criterion == "l1_norm":
            scores = {g.name: self._l1(g) for g in self.groups}
        else:
            if self._count == 0:
                raise PruningError(
                    f"no mini-batch was scored for {self.criterion}: run forward/backward and "
                    "after_backward() inside the accumulator before asking for scores"
                )
            scores = {name: s / self._count for name, s in self._sums.items()}
        return normalize_per_group(scores) if normalize else scores

    def _l1(self, group: ChannelGroup) -> torch.Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for name in group.convs:
            weight = self._modules[name].weight.detach()
            total += weight.abs().reshape(group.size, -1).sum(1).double().cpu()
        return total


def normalize_per_group(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Molchanov et al. (2017)'s layer-wise L2 normalisation: ``s / ||s||_2`` within each group.

    It makes scores comparable across layers, but a group with many channels gets smaller
    per-channel values, which tilts removal towards the widest layers.
    """
    return {name: s / s.norm().clamp_min(1e-12) for name, s in scores.items()}


@dataclass(frozen=True)
class TaylorCheck:
    """What :func:`taylor_prediction_check` found on one group and one mini-batch.

    ``channels``: the sampled channels of the group, ascending. ``predicted`` and ``measured``:
    for each of them, the first-order prediction of the change of the mean loss when the channel
    is zeroed, and the change measured. ``scores``: the criterion's scores of every channel of the
    group on the same mini-batch. ``loss``: the intact network's mean loss on it.
    """

    group: str
    channels: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    scores: np.ndarray
    loss: float

    @property
    def correlation(self) -> float:
        """Pearson correlation of ``predicted`` and ``measured``; NaN when it is undefined (fewer
        than two channels, or either side constant)."""
        if len(self.channels) < 2 or np.ptp(self.predicted) == 0 or np.ptp(self.measured) == 0:
            return float("nan")
        return float(np.corrcoef(self.predicted, self.measured)[0, 1])


def taylor_prediction_check(
    model: nn.Module,
    group: ChannelGroup,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    criterion: str = "taylor_activation",
    channels: int = 48,
    seed: int = 0,
) -> TaylorCheck:
    """Does the first-order Taylor estimate predict what removing a channel does to the loss?

    The check behind the Taylor criteria, on one mini-batch (``images`` as the network takes them,
    normalised) with the network in evaluation mode, so that BatchNorm uses its running statistics
    and nothing but the zeroed channel changes. For at most ``channels`` channels of ``group``,
    drawn at random with ``seed``, it compares the predicted change of the mean cross-entropy,
    ``-sum a * dL/da`` over the batch, the feature map and the group's score points, with the
    change measured when the channel reads as zero at every score point (:func:`zero_channels`).
    Each measured channel costs one forward pass: that is what ``channels`` bounds.

    The same backward pass gives ``criterion``'s scores of every channel of the group on this one
    mini-batch, what one step of the pruning loop accumulates per mini-batch (``random`` draws
    them with ``seed``; the no-pruning control ``none`` scores every channel 0).

    The weights are left as they were and the training mode is restored; the gradients are
    cleared.
    """
    if channels < 1:
        raise PruningError(f"channels={channels}: sample at least one channel")
    modules = dict(model.named_modules())
    kept: list[list[torch.Tensor | None]] = []  # [activation, its gradient] per score point

    def keep(module, inputs, output):
        pair: list[torch.Tensor | None] = [output.detach().clone(), None]  # clone: see the top
        kept.append(pair)

        def on_grad(grad):
            pair[1] = grad.detach()

        output.register_hook(on_grad)

    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        with ImportanceAccumulator(model, [group], criterion=criterion, generator=generator) as acc:
            handles = [modules[name].register_forward_hook(keep) for name in group.score_points]
            try:
                model.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(images), labels)
                loss.backward()
                acc.after_backward()
            finally:
                for handle in handles:
                    handle.remove()
        scores = acc.scores()[group.name].numpy()
        first_order = -sum((a.double() * g.double()).sum(dim=(0, 2, 3)) for a, g in kept)
        picked = np.sort(np.random.default_rng(seed).permutation(group.size)[:channels])
        base = loss.item()
        measured = []
        with torch.no_grad():
            for c in picked:
                with zero_channels(model, {group.name: [int(c)]}, groups=[group]):
                    measured.append(F.cross_entropy(model(images), labels).item() - base)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return TaylorCheck(
        group=group.name,
        channels=picked,
        predicted=first_order.cpu().numpy()[picked],
        measured=np.array(measured),
        scores=scores,
        loss=base,
    )
