"""The iterative pruning loop of both papers: score, remove the weakest filters, go on training.

One *step*:

1. score every prunable channel group over ``score_batches`` mini-batches, with SGD-with-momentum
   updates in between when ``train_during_scoring`` (as MATLAB's ``taylorPrunableNetwork`` loop
   does);
2. rank all channels of all groups together (by default after Molchanov's layer-wise L2
   normalisation, ``normalize_scores``) and remove the ``filters_per_step`` lowest, never
   emptying a group (each layer keeps ``min_channels``) and never touching the classifier (with
   ``channel_multiple`` m > 1 each layer keeps a multiple of m channels, and a step removes up
   to m - 1 channels more than asked: see :func:`select_channels`); then
   re-estimate the BatchNorm statistics over ``bn_recalibration_batches`` training batches, since
   those of the layers downstream described the larger network (MATLAB's loop refreshes them as
   it trains on);
3. evaluate the smaller network as it is ("pruned"), and a copy after ``finetune_epochs`` of
   fine-tuning ("finetuned"): the papers report both. The loop continues from the pruned network,
   so the fine-tuned copies are snapshots, not the trunk.

Each step is checkpointed (state dict plus channel layout, with the run identity it belongs to);
a run interrupted anywhere resumes after its last finished step and reaches the same result. A
checkpoint of another run identity is moved aside, never overwritten silently. The history
records, per step, what was removed, the parameters and MACs left, the channels left per group,
and the metrics.

Under torch.distributed (``torchrun``) every rank runs the loop: scoring and fine-tuning are
data-parallel over shards of the same global batches, the score sums and counts are summed over
ranks before ranking (so every rank removes the same channels), and rank 0 writes checkpoints.

Any torchvision-style CNN can be pruned: pass ``ignored=[its classifier]`` (a FaceNet's is
ignored without it) and no ``checkpoint_dir`` (checkpoints are FaceNet files).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import artifacts, distributed
from ..errors import PruningError
from ..models import FaceNet, count_macs, count_parameters
from ..parameters import PruneParameters
from ..progress import progress_bar
from ..training import epoch_batches, epoch_generator, recalibrate_batchnorm, train_epoch
from .scoring import ImportanceAccumulator
from .surgery import ChannelGroup, load_model, prunable_groups, remove_channels, save_model

__all__ = ["PruningResult", "select_channels", "prune_iteratively"]

STAGES = ("original", "pruned", "finetuned", "final")


@dataclass
class PruningResult:
    """What the loop returns: the pruned network, its history and the layer widths per step."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)


def _floor(size: int, min_channels: int, multiple: int) -> int:
    """The fewest channels a group of ``size`` may keep (``size``: it cannot shrink)."""
    if size < multiple:
        return size
    return min(size, max(math.ceil(max(min_channels, 1) / multiple) * multiple, multiple))


def _removable(size: int, min_channels: int, multiple: int) -> int:
    return size - _floor(size, min_channels, multiple)


def select_channels(
    scores: Mapping[str, torch.Tensor],
    *,
    count: int,
    min_channels: int = 1,
    channel_multiple: int = 1,
) -> dict[str, list[int]]:
    """The ``count`` lowest-scoring channels over all groups, leaving ``min_channels`` in each.

    Ties are broken by group order and channel index, so the choice is deterministic.

    ``channel_multiple`` m > 1: every group keeps a multiple of m channels (a group smaller than
    m is never pruned; one whose size is not yet a multiple first drops to one). The ``count``
    channels are chosen over all groups as for m = 1, then each group's share is rounded down to
    a size that is a multiple of m, and the groups with the largest left-over shares round up
    instead, one by one, until at least ``count`` channels go: a step removes between ``count``
    and ``count + m - 1`` channels (fewer only when no group can round up). Each group loses its
    own lowest-scoring channels. m = 1 is the plain selection.
    """
    if channel_multiple < 1:
        raise PruningError(f"channel_multiple={channel_multiple}: must be at least 1")
    names = list(scores)
    cap = {n: _removable(len(scores[n]), min_channels, channel_multiple) for n in names}
    removable = sum(cap.values())
    if count > removable:
        raise PruningError(
            f"cannot remove {count} channels: only {removable} can go while every layer keeps "
            f"{min_channels} (and a multiple of {channel_multiple}); ask for fewer filters per "
            "step or fewer steps"
        )
    plan = _global_lowest(scores, names, count, cap)
    if channel_multiple > 1:
        plan = _round_to_multiples(scores, plan, count, channel_multiple, cap)
    return {n: sorted(idx) for n, idx in plan.items() if idx}


def _global_lowest(scores, names, count, cap) -> dict[str, list[int]]:
    """Walk all channels from the lowest score up, taking each group's up to its capacity."""
    flat = torch.cat([scores[n].double() for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    local = torch.cat([torch.arange(len(scores[n])) for n in names])
    order = torch.argsort(flat, stable=True)
    plan: dict[str, list[int]] = {}
    for pos in order.tolist():
        if count == 0:
            break
        name = names[int(owner[pos])]
        if len(plan.get(name, ())) >= cap[name]:
            continue
        plan.setdefault(name, []).append(int(local[pos]))
        count -= 1
    return plan


def _round_to_multiples(scores, plan, count, multiple, cap) -> dict[str, list[int]]:
    """Round each group's share of ``plan`` to a multiple of ``multiple`` (see select_channels)."""
    down, up = {}, {}
    for name, idx in plan.items():
        size, k = len(scores[name]), len(idx)
        offset = size % multiple  # removals that land on a multiple: offset + j * multiple
        down[name] = 0 if k < offset or k == 0 else k - (k - offset) % multiple
        up[name] = min(down[name] + (offset if down[name] == 0 and offset else multiple), cap[name])
    total = sum(down.values())
    # the largest left-over share first; ties in group order (sorted() is stable)
    ordered = [n for n in scores if n in plan]
    for name in sorted(ordered, key=lambda n: down[n] - len(plan[n])):
        if total >= count:
            break
        if len(plan[name]) > down[name]:
            total += up[name] - down[name]
            down[name] = up[name]
    return {n: _lowest(scores[n], k) for n, k in down.items()}


def _lowest(scores: torch.Tensor, k: int) -> list[int]:
    return torch.argsort(scores.double(), stable=True)[:k].tolist()


def _filters(groups: list[ChannelGroup]) -> int:
    return sum(g.size * g.filters_per_channel for g in groups)


def _channels_per_step(config: PruneParameters, channels0: int) -> int:
    if config.criterion == "none":  # the no-pruning control: train on, remove nothing
        return 0
    if config.filters_per_step >= 1:
        return int(config.filters_per_step)
    return max(1, round(config.filters_per_step * channels0))


def _check_feasible(config: PruneParameters, groups: list[ChannelGroup], per_step: int) -> None:
    m = config.channel_multiple
    removable = sum(_removable(g.size, config.min_channels, m) for g in groups)
    removable_filters = sum(
        _removable(g.size, config.min_channels, m) * g.filters_per_channel for g in groups
    )
    if config.target_fraction is not None:
        most = removable_filters / max(_filters(groups), 1)
        if config.target_fraction > most:
            raise PruningError(
                f"target_fraction {config.target_fraction:.3f} is impossible: at most "
                f"{most:.3f} of the prunable filters can go while every layer keeps "
                f"{config.min_channels}"
            )
    elif per_step * config.max_steps > removable:
        raise PruningError(
            f"{config.max_steps} steps of {per_step} channels ask for "
            f"{per_step * config.max_steps}, but only {removable} channels can be removed: "
            f"lower max_steps to {removable // per_step} or filters_per_step, or set "
            "target_fraction"
        )


def _sgd(model: nn.Module, lr: float, config: PruneParameters) -> torch.optim.Optimizer:
    # A fresh optimiser each time: channel removal replaces the parameter tensors.
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _batches(train_set: Dataset, config: PruneParameters, *, key: int):
    return epoch_batches(
        train_set,
        batch_size=config.batch_size,
        seed=config.seed,
        epoch=key * 1000,
        num_workers=config.num_workers,
    )


def _finetune(model, train_set, transform, config: PruneParameters, *, epochs: int, key: int):
    optimizer = _sgd(model, config.finetune_lr, config)
    batches = _batches(train_set, config, key=key)
    per_epoch = math.ceil(len(train_set) / config.batch_size)
    rank = distributed.info().rank
    with distributed.data_parallel(model) as net:
        for epoch in range(epochs):
            torch.manual_seed(config.seed * 7919 + key * 1000 + epoch + rank * 104_729)
            train_epoch(
                net,
                itertools.islice(batches, per_epoch),
                optimizer,
                transform,
                generator=epoch_generator(config.seed, key * 1000 + epoch, 1),
                channels_last=config.channels_last,
            )


def _score_and_remove(model, groups, *, step, steps: _Steps):
    train_set, transform, config = steps.train_set, steps.transform, steps.config
    optimizer = _sgd(model, config.lr, config) if config.train_during_scoring else None
    batches = _batches(train_set, config, key=step)
    torch.manual_seed(config.seed * 7919 + step + distributed.info().rank * 104_729)
    accumulator = ImportanceAccumulator(
        model, groups, criterion=config.criterion, generator=epoch_generator(config.seed, step, 2)
    )
    with accumulator, distributed.data_parallel(model) as net:
        train_epoch(
            net,
            itertools.islice(batches, config.score_batches),
            optimizer,
            transform,
            generator=epoch_generator(config.seed, step, 1),
            channels_last=config.channels_last,
            after_backward=accumulator.after_backward,
            before_backward=accumulator.set_grad_scale,
        )
    distributed.all_reduce_importance(accumulator)  # every rank ranks the same totals
    scores = accumulator.scores(normalize=config.normalize_scores)
    m = config.channel_multiple
    # Rounding to multiples may have taken more than per_step before: never ask for more than
    # can still go (the feasibility check counted whole steps of per_step).
    left = sum(_removable(g.size, config.min_channels, m) for g in groups)
    plan = select_channels(
        scores,
        count=min(steps.per_step, left),
        min_channels=config.min_channels,
        channel_multiple=m,
    )
    if plan:
        remove_channels(model, plan, example_input=steps.example, ignored=steps.ignored(model))
        if config.channels_last:  # new parameter tensors come back contiguous
            model.to(memory_format=torch.channels_last)
    if config.bn_recalibration_batches:
        with distributed.data_parallel(model) as net:
            recalibrate_batchnorm(
                net,
                itertools.islice(
                    _batches(train_set, config, key=step), config.bn_recalibration_batches
                ),
                transform,
                generator=epoch_generator(config.seed, step, 3),
                channels_last=config.channels_last,
            )
    return plan


def _layer_row(step: int, groups: list[ChannelGroup]) -> dict[str, Any]:
    return {"step": step, "sizes": {g.name: g.size for g in groups}}


@dataclass
class _Recorder:
    """Turns a network at some stage of the loop into one history row."""

    evaluate: Callable[[nn.Module], Mapping[str, Any]]
    channels0: int
    filters0: int
    image_size: int

    def row(self, stage: str, step: int, net: nn.Module, groups: list[ChannelGroup]) -> dict:
        filters = _filters(groups)
        net.eval()
        return {
            "step": step,
            "stage": stage,
            "channels_removed": self.channels0 - sum(g.size for g in groups),
            "filters_removed": self.filters0 - filters,
            "filters_removed_pct": 100.0 * (self.filters0 - filters) / self.filters0,
            "params": count_parameters(net),
            "macs": count_macs(net, image_size=self.image_size),
            **self.evaluate(net),
        }


@dataclass
class _Checkpoint:
    """``last.pt`` of a run: the network after the last finished step, its history and layers,
    and the run identity it belongs to (a :func:`~facepruning.pruning.surgery.save_model`
    file)."""

    path: Path | None
    run_identity: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return artifacts.fingerprint(self.run_identity)

    def resume(self, device: torch.device) -> tuple[PruningResult, int] | None:
        """The saved result and the next step, or None (no checkpoint, or another run's, which
        is moved aside with a message naming what changed)."""
        if self.path is None or not self.path.exists():
            return None
        saved, meta = load_model(self.path)
        distributed.barrier()  # every rank has read the file before rank 0 may move it
        if not artifacts.belongs_to_run(
            self.path, meta, self.run_identity, set_aside=distributed.is_main()
        ):
            return None
        saved.to(device)
        return PruningResult(saved, list(meta["history"]), list(meta["layers"])), meta["step"] + 1

    def save(self, result: PruningResult, step: int) -> None:
        if self.path is not None and distributed.is_main():
            meta = {
                "fingerprint": self.fingerprint,
                "run_identity": self.run_identity,
                "step": step,
                "history": result.history,
                "layers": result.layers,
            }
            save_model(self.path, result.model, meta=meta)
        distributed.barrier()


@dataclass
class _Steps:
    """What every step of one run needs besides the network."""

    train_set: Dataset
    transform: Callable
    config: PruneParameters
    per_step: int
    example: torch.Tensor
    recorder: _Recorder
    checkpoint: _Checkpoint
    ignored_names: list[str] | None = None

    def ignored(self, model: nn.Module) -> list[nn.Module] | None:
        """The layers never pruned, looked up by name in ``model`` (a resumed copy too)."""
        if self.ignored_names is None:
            return None
        return [model.get_submodule(n) for n in self.ignored_names]

    def target_reached(self, groups: list[ChannelGroup]) -> bool:
        target = self.config.target_fraction
        removed = 1 - _filters(groups) / self.recorder.filters0
        return target is not None and removed >= target - 1e-9

    def one(self, result: PruningResult, groups: list[ChannelGroup], step: int) -> list:
        """Score, remove, record "pruned" (and "finetuned"), checkpoint; return the groups."""
        model, config = result.model, self.config
        plan = _score_and_remove(model, groups, step=step, steps=self)
        groups = [dataclasses.replace(g, size=g.size - len(plan.get(g.name, ()))) for g in groups]
        result.history.append(self.recorder.row("pruned", step, model, groups))
        if config.finetune_epochs:
            tuned = copy.deepcopy(model)
            _finetune(
                tuned,
                self.train_set,
                self.transform,
                config,
                epochs=config.finetune_epochs,
                key=step,
            )
            result.history.append(self.recorder.row("finetuned", step, tuned, groups))
            del tuned
        result.layers.append(_layer_row(step, groups))
        self.checkpoint.save(result, step)
        return groups

    def finish(self, result: PruningResult, groups: list[ChannelGroup]) -> None:
        """The optional final fine-tuning of the trunk, its "final" row and checkpoint."""
        last_step = result.layers[-1]["step"]
        epochs = self.config.final_finetune_epochs
        if epochs:
            _finetune(
                result.model, self.train_set, self.transform, self.config, epochs=epochs, key=10_000
            )
        result.history.append(self.recorder.row("final", last_step, result.model, groups))
        self.checkpoint.save(result, last_step)


def _names_of(model: nn.Module, modules: Sequence[nn.Module] | None) -> list[str] | None:
    if modules is None:
        return None
    names = {m: n for n, m in model.named_modules()}
    missing = [type(m).__name__ for m in modules if m not in names]
    if missing:
        raise PruningError(f"ignored layers {missing} are not modules of the model being pruned")
    return [names[m] for m in modules]


def _run_steps(result: PruningResult, steps: _Steps, *, start: int, progress: bool) -> None:
    config = steps.config
    bar = progress_bar(
        total=config.max_steps,
        initial=start - 1,
        desc="pruning steps",
        disable=not (progress and distributed.is_main()),
    )
    # Group membership never changes (every group keeps a channel); only sizes shrink. Tracing
    # the network once here and updating sizes from each plan saves a trace per step.
    groups = prunable_groups(
        result.model, example_input=steps.example, ignored=steps.ignored(result.model)
    )
    for step in range(start, config.max_steps + 1):
        if steps.target_reached(groups):
            break
        groups = steps.one(result, groups, step)
        bar.update(1)
        bar.set_postfix(filters_removed=f"{result.history[-1]['filters_removed_pct']:.1f}%")
    bar.close()
    steps.finish(result, groups)


def prune_iteratively(
    model: nn.Module,
    *,
    train_set: Dataset,
    train_transform: Callable,
    evaluate: Callable[[nn.Module], Mapping[str, Any]],
    example_input: torch.Tensor,
    config: PruneParameters,
    checkpoint_dir: str | Path | None = None,
    run_identity: Mapping[str, Any] | None = None,
    progress: bool = True,
    ignored: Sequence[nn.Module] | None = None,
) -> PruningResult:
    """Prune ``model`` step by step; see the module docstring for what a step does.

    ``evaluate(model)`` returns the metrics to record (a flat dict; the model is in eval mode).
    ``example_input`` is one batch of the input size (for tracing the dependency graph and
    counting MACs). Returns the final (pruned, optionally fine-tuned) network and the history.

    With ``checkpoint_dir``, every step is saved to ``last.pt`` there with ``run_identity`` (a
    JSON-able dict of everything that determines the result: parameters, data, baseline) and
    its :func:`~facepruning.artifacts.fingerprint`; a later call with the same identity resumes
    after the last finished step. A checkpoint of another identity is moved aside to
    ``last.<its fingerprint>.pt``, with one line naming the parameters that changed, and the
    run starts over. Checkpoints are :func:`save_model` files, so they need a FaceNet.

    ``ignored``: for a network other than a :class:`~facepruning.models.FaceNet`, the layers
    that must keep their outputs (its classifier), as in
    :func:`~facepruning.pruning.surgery.prunable_groups`.
    """
    if checkpoint_dir and not isinstance(model, FaceNet):
        raise PruningError(
            f"checkpoint_dir needs a FaceNet (checkpoints are save_model files), not a "
            f"{type(model).__name__}: pass checkpoint_dir=None to prune another network"
        )
    device = next(model.parameters()).device
    example = example_input[:1].detach().to(device)
    ignored_names = _names_of(model, ignored)
    groups0 = prunable_groups(model, example_input=example, ignored=ignored)
    recorder = _Recorder(
        evaluate, sum(g.size for g in groups0), _filters(groups0), int(example.shape[-1])
    )
    per_step = _channels_per_step(config, recorder.channels0)
    _check_feasible(config, groups0, per_step)
    identity = artifacts.jsonable(run_identity or {})
    checkpoint = _Checkpoint(Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None, identity)
    result, start = checkpoint.resume(device) or (PruningResult(model=model), 1)
    if not result.history:
        result.history.append(recorder.row("original", 0, model, groups0))
        result.layers.append(_layer_row(0, groups0))
    if config.channels_last:
        result.model.to(memory_format=torch.channels_last)
    if not any(row["stage"] == "final" for row in result.history):
        steps = _Steps(
            train_set,
            train_transform,
            config,
            per_step,
            example,
            recorder,
            checkpoint,
            ignored_names,
        )
        _run_steps(result, steps, start=start, progress=progress)
    result.model = result.model.eval()
    return result
