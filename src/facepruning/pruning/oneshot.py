"""Prune any network in one call: score, remove physically, report.

:func:`prune` is the short path for a network of your own, in the spirit of Torch-Pruning's
``MetaPruner(...).step()``: it traces the channel groups, scores them with one criterion over the
mini-batches you give (none needed for weight-only criteria), removes the lowest-scoring share of
all prunable channels at once, and returns the narrowed network with a :class:`PruneReport`. For
several steps with training in between, use :func:`~facepruning.pruning.loop.prune_iteratively`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import PruningError
from ..models import count_macs, count_parameters
from ..training import epoch_generator
from .importance import Importance, importance_of
from .loop import _SCORE_STREAM, channels_per_step, default_score_pass, select_channels
from .scoring import ImportanceAccumulator
from .surgery import ChannelGroup, prunable_groups, remove_channels

__all__ = ["prune", "Pruned", "PruneReport"]


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` removed: totals before and after, and each group's channels."""

    importance: str
    parameters: tuple[int, int]
    macs: tuple[int, int]
    channels: tuple[int, int]
    groups: tuple[tuple[str, int, int], ...]  # (group, channels before, channels after)
    removed: dict[str, list[int]]  # per group, the indices (before pruning) of the channels gone

    def __str__(self) -> str:
        def change(pair: tuple[int, int]) -> str:
            return f"{pair[0]:,} -> {pair[1]:,} ({1 - pair[1] / max(pair[0], 1):.1%} fewer)"

        lines = [
            f"pruned by {self.importance}",
            f"parameters {change(self.parameters)}",
            f"MACs       {change(self.macs)}",
            f"channels   {change(self.channels)} in {len(self.groups)} groups",
        ]
        narrowed = [(n, a, b) for n, a, b in self.groups if b < a]
        lines += [f"  {n}: {a} -> {b}" for n, a, b in narrowed]
        return "\n".join(lines)


class Pruned(NamedTuple):
    """:func:`prune`'s result: the (same, now narrower) model and the report."""

    model: nn.Module
    report: PruneReport


def prune(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    importance: str | Importance = "taylor_activation",
    amount: float = 0.3,
    batches: Iterable | None = None,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    channel_multiple: int = 1,
    min_channels: int = 1,
    ignored: Sequence[nn.Module] | None = None,
    normalize: bool = True,
    seed: int = 0,
) -> Pruned:
    """Remove the lowest-scoring ``amount`` of the prunable channels of ``model``, in place.

    ``example_inputs``: one batch as the network takes it (tracing, MACs). ``importance``: a name
    (``taylor_activation``, ``taylor_weight``, ``l1_norm``, ``random``) or an
    :class:`~facepruning.pruning.importance.Importance`. ``amount``: share of the prunable channels
    (< 1) or a count. ``batches``: mini-batches ``(x, y)`` to score on, for criteria that need data
    (scored in eval mode; ``loss_fn(model, batch)`` replaces the cross-entropy). All groups are
    ranked together (after layer-wise normalisation unless ``normalize=False``); each keeps
    ``min_channels`` and, with ``channel_multiple`` m, a multiple of m channels. ``ignored``: the
    layers whose outputs must stay (the classifier; a FaceNet's is found without it).

    Example (torchvision's ResNet18, 30% of the channels by L1 norm)::

        net = resnet18()
        model, report = facepruning.prune(
            net, torch.randn(1, 3, 224, 224), importance="l1_norm", amount=0.3,
            ignored=[net.fc])
        print(report)
    """
    imp = importance_of(importance)
    if imp.needs_data and batches is None:
        raise PruningError(f"{imp!r} scores channels on data: pass batches=[(x, y), ...]")
    device = next(model.parameters()).device
    example = example_inputs[:1].detach().to(device)
    groups = prunable_groups(model, example_input=example, ignored=ignored)
    if not groups:
        raise PruningError(
            f"this {type(model).__name__} has no prunable channel group: every conv is ignored "
            "or feeds an ignored layer"
        )
    before = _sizes(model, example, groups)
    accumulator = ImportanceAccumulator(
        model, groups, importance=imp, generator=epoch_generator(seed, 1, _SCORE_STREAM)
    )
    with accumulator:
        if imp.needs_data:
            default_score_pass(batches, loss_fn=loss_fn)(model, accumulator, 1)
    count = channels_per_step(amount, before[2])
    plan = select_channels(
        accumulator.scores(normalize=normalize),
        count=count,
        min_channels=min_channels,
        channel_multiple=channel_multiple,
    )
    remove_channels(model, plan, example_input=example, ignored=ignored)
    after_groups = [(g.name, g.size, g.size - len(plan.get(g.name, ()))) for g in groups]
    after = _sizes(model, example, None, channels=sum(n for _, _, n in after_groups))
    report = PruneReport(
        importance=imp.name or type(imp).__name__,
        parameters=(before[0], after[0]),
        macs=(before[1], after[1]),
        channels=(before[2], after[2]),
        groups=tuple(after_groups),
        removed=plan,
    )
    return Pruned(model, report)


def _sizes(
    model: nn.Module,
    example: torch.Tensor,
    groups: list[ChannelGroup] | None,
    channels: int | None = None,
) -> tuple[int, int, int]:
    if channels is None:
        channels = sum(g.size for g in groups or ())
    return count_parameters(model), count_macs(model, example), channels
