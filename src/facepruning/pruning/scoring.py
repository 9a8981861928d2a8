"""Scoring: the engine that runs a criterion over mini-batches, and the check of its premise.

:class:`ImportanceAccumulator` attaches to a model for the mini-batches of one pruning step: it
hooks the score points of every channel group when the criterion reads activations, asks the
criterion (an :class:`~facepruning.pruning.importance.Importance`) for each mini-batch's
contribution after the backward pass, and returns the per-group averages, optionally after
Molchanov's layer-wise L2 normalisation (:func:`normalize_per_group`). Criteria that need no data
(L1 norm, random) are asked once.

A group with several producers (a residual stream written by several blocks, MobileNetV2's
expansion conv tied to its depthwise conv) gets the sum of its members' scores: removing one of
its channels removes all of them at once, and first-order effects add.

Scores come from hooks on the model itself (no copy of the network). The activation hook keeps a
copy of the feature map (not a view: torchvision's Bottleneck adds its identity in place into
``bn3``'s output, ``out += identity``, and an in-place ReLU would overwrite it too, so a view read
at backward time holds the modified values) until the mini-batch's backward pass is over.

How well the first-order estimate predicts what removal does is checked on one group and one
mini-batch by :func:`taylor_prediction_check` (notebook 03's worked example).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PruningError
from ..statistics import spearman
from .importance import Captured, Importance, importance_of
from .surgery import ChannelGroup, zero_channels

__all__ = [
    "ImportanceAccumulator",
    "normalize_per_group",
    "TaylorCheck",
    "taylor_prediction_check",
    "example_groups",
]


class ImportanceAccumulator:
    """Accumulate one criterion's per-channel scores for each group over the mini-batches of a
    step.

    Use as a context manager around the mini-batches (it registers and removes the hooks), call
    :meth:`after_backward` after each ``loss.backward()`` and before the optimiser step, then read
    :meth:`scores`::

        with ImportanceAccumulator(model, groups, importance="taylor_activation") as acc:
            for x, y in batches:
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                acc.after_backward()
                optimizer.step(); optimizer.zero_grad()
        scores = acc.scores(normalize=True)

    ``importance``: a registered name (:data:`~facepruning.pruning.importance.IMPORTANCES`) or an
    :class:`~facepruning.pruning.importance.Importance` instance. ``generator``: the random source
    of criteria that draw (``random``).
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        *,
        importance: str | Importance = "taylor_activation",
        generator: torch.Generator | None = None,
    ):
        self.model = model
        self.groups = list(groups)
        self.importance = importance_of(importance)
        self.generator = generator
        self._modules = dict(model.named_modules())
        self._sums = {g.name: torch.zeros(g.size, dtype=torch.float64) for g in self.groups}
        self._captured: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._count = 0  # images (per-image criteria) or mini-batches (the others)
        self._batch_size = 0
        self._handles: list = []
        # Turns the gradient of the loss into per-image loss gradients. None: the loss is a mean
        # over the batch, so the factor is the batch size. Data-parallel training sets it per
        # batch (set_grad_scale) because its loss is scaled to the global batch.
        self.grad_scale: float | None = None

    # -- hooks -------------------------------------------------------------------------------
    def __enter__(self) -> ImportanceAccumulator:
        if self.importance.needs_data:  # every criterion that scores data learns the batch size
            self._handles.append(self.model.register_forward_pre_hook(self._batch_hook))
        if self.importance.needs_activations:
            for group in self.groups:
                for name in group.score_points:
                    module = self._modules[name]
                    self._handles.append(module.register_forward_hook(self._forward_hook(group)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._captured.clear()

    def _batch_hook(self, module, inputs) -> None:
        first = next((x for x in inputs if isinstance(x, torch.Tensor)), None)
        if first is not None and first.dim() > 0:
            self._batch_size = first.shape[0]

    def _forward_hook(self, group: ChannelGroup):
        def hook(module, inputs, output):
            if not (torch.is_grad_enabled() and output.requires_grad):
                return
            # A copy, not output.detach(): a view shares storage with output, which later layers
            # may modify in place (Bottleneck's ``out += identity``, an in-place ReLU) before the
            # gradient arrives. The gradient hook below gets dL/d(output) as it was here.
            activation = output.detach().clone()
            self._batch_size = output.shape[0]

            def on_grad(grad):
                self._captured.setdefault(group.name, []).append((activation, grad.detach()))

            output.register_hook(on_grad)

        return hook

    def after_backward(self) -> None:
        """Read what this mini-batch contributes; call after backward, before the step."""
        importance = self.importance
        if not importance.needs_data:
            self._count += 1
            return
        batch = self._batch_size
        scale = float(batch) if self.grad_scale is None else float(self.grad_scale)
        for group in self.groups:
            captured = Captured(
                self._modules,
                activations=self._captured.pop(group.name, []),
                grad_scale=scale,
                batch_size=batch,
                generator=self.generator,
            )
            if importance.needs_activations and not captured.activations:
                continue  # no gradient reached this group in this mini-batch
            self._sums[group.name] += importance(group, captured)
        self._captured.clear()
        self._count += batch if importance.per_image else 1

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
        """Per-group channel scores (float64); ``normalize`` divides each group by its L2 norm,
        for criteria that allow it (``random`` draws are returned as drawn)."""
        importance = self.importance
        if not importance.needs_data:
            captured = Captured(self._modules, generator=self.generator)
            scores = {g.name: importance(g, captured).double() for g in self.groups}
        else:
            if self._count == 0:
                raise PruningError(
                    f"no mini-batch was scored for {importance!r}: run forward/backward and "
                    "after_backward() inside the accumulator before asking for scores"
                )
            scores = {name: s / self._count for name, s in self._sums.items()}
        for g in self.groups:
            if scores[g.name].shape != (g.size,):
                raise PruningError(
                    f"{importance!r} returned {tuple(scores[g.name].shape)} scores for group "
                    f"{g.name} of {g.size} channels: return one score per channel"
                )
        return normalize_per_group(scores) if normalize and importance.normalizable else scores


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
        """Spearman's rank correlation of ``predicted`` and ``measured``: whether the estimate
        orders the channels as zeroing them does, which is all a criterion uses (a single
        outlier cannot carry it, as it can a Pearson correlation). NaN when it is undefined
        (fewer than two channels, or either side constant). Ties (channels whose activation is
        all zero predict and change nothing) share their average rank."""
        return spearman(self.predicted, self.measured)


def taylor_prediction_check(
    model: nn.Module,
    group: ChannelGroup,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    importance: str | Importance = "taylor_activation",
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

    The same backward pass gives ``importance``'s scores of every channel of the group on this one
    mini-batch, what one step of the pruning loop accumulates per mini-batch (``random`` draws
    them with ``seed``).

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
        with ImportanceAccumulator(
            model, [group], importance=importance, generator=generator
        ) as acc:
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


def example_groups(groups: Sequence[ChannelGroup]) -> dict[str, ChannelGroup]:
    """Where to look at the first-order estimate (notebook 03's worked example): the ``stem``
    (the first group, at full resolution), a ``middle`` group, the ``widest`` group and, where
    the network has groups of several convs, the first of those with the most (``coupled group``:
    ResNet50's residual streams, whose blocks add into one another; MobileNetV2's expansion conv
    with its depthwise partner). A group that plays two roles is named once, by its first."""
    if not groups:
        raise PruningError("the network has no prunable groups to look at")
    roles = {
        "stem": groups[0],
        "middle": groups[len(groups) // 2],
        "widest": max(groups, key=lambda g: g.size),
    }
    most = max(g.filters_per_channel for g in groups)
    if most > 1:
        roles["coupled group"] = next(g for g in groups if g.filters_per_channel == most)
    named: dict[str, ChannelGroup] = {}
    for role, group in roles.items():
        if all(group.name != g.name for g in named.values()):
            named[role] = group
    return named
