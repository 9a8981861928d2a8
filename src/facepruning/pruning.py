"""The iterative pruning loop of both papers: score, remove the weakest filters, go on training.

One *step*:

1. score every prunable channel group over ``score_batches`` mini-batches, with SGD-with-momentum
   updates in between when ``train_during_scoring`` (as MATLAB's ``taylorPrunableNetwork`` loop
   does);
2. rank all channels of all groups together (by default after Molchanov's layer-wise L2
   normalisation, ``normalize_scores``) and remove the ``filters_per_step`` lowest, never
   emptying a group (each layer keeps ``min_channels``) and never touching the classifier; then
   re-estimate the BatchNorm statistics over ``bn_recalibration_batches`` training batches, since
   those of the layers downstream described the larger network (MATLAB's loop refreshes them as
   it trains on);
3. evaluate the smaller network as it is ("pruned"), and a copy after ``finetune_epochs`` of
   fine-tuning ("finetuned"): the papers report both. The loop continues from the pruned network,
   so the fine-tuned copies are snapshots, not the trunk.

Each step is checkpointed (state dict plus channel layout); a run interrupted anywhere resumes
after its last finished step and reaches the same result. The history records, per step, what
was removed, the parameters and MACs left, the channels left per group, and the metrics.

Under torch.distributed (``torchrun``) every rank runs the loop: scoring and fine-tuning are
data-parallel over shards of the same global batches, the score sums and counts are summed over
ranks before ranking (so every rank removes the same channels), and rank 0 writes checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from . import distributed
from .errors import PruningError
from .models import count_macs, count_parameters
from .scoring import CRITERIA, ImportanceAccumulator
from .surgery import ChannelGroup, load_model, prunable_groups, remove_channels, save_model
from .training import epoch_batches, epoch_generator, recalibrate_batchnorm, train_epoch

__all__ = ["PruningConfig", "PruningResult", "select_channels", "prune_iteratively"]

STAGES = ("original", "pruned", "finetuned", "final")


@dataclass
class PruningConfig:
    """Parameters of the iterative loop (the notebook's and CLI's ``prune`` parameters).

    ``filters_per_step`` counts ranked channels: a whole number is a count per step (MATLAB's
    default is 8), a fraction below 1 is that share of the prunable channels the network started
    with. The loop stops after ``max_steps`` or once ``target_fraction`` of the prunable filters
    are gone, whichever comes first.
    """

    criterion: str = "taylor_activation"
    filters_per_step: float = 8
    max_steps: int = 30
    target_fraction: float | None = None
    score_batches: int = 50
    train_during_scoring: bool = True
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    finetune_epochs: int = 1
    finetune_lr: float = 0.001
    final_finetune_epochs: int = 0
    normalize_scores: bool = True
    bn_recalibration_batches: int = 0
    min_channels: int = 1
    seed: int = 0
    channels_last: bool = True
    num_workers: int = 0

    def __post_init__(self):
        if self.criterion not in CRITERIA:
            raise PruningError(f"unknown criterion {self.criterion!r}; choose one of {CRITERIA}")
        if not self.filters_per_step > 0:
            raise PruningError(
                f"filters_per_step must be a positive count or a fraction in (0, 1), "
                f"got {self.filters_per_step}"
            )
        if self.filters_per_step >= 1 and self.filters_per_step != int(self.filters_per_step):
            raise PruningError(
                f"filters_per_step {self.filters_per_step} is neither a whole count nor a "
                "fraction below 1"
            )
        if self.target_fraction is not None and not 0 < self.target_fraction < 1:
            raise PruningError(
                f"target_fraction is the share of prunable filters to remove, in (0, 1); "
                f"got {self.target_fraction}"
            )
        for name in ("max_steps", "score_batches", "min_channels", "batch_size"):
            if getattr(self, name) < 1:
                raise PruningError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("finetune_epochs", "final_finetune_epochs", "bn_recalibration_batches"):
            if getattr(self, name) < 0:
                raise PruningError(f"{name} cannot be negative, got {getattr(self, name)}")


@dataclass
class PruningResult:
    """What the loop returns: the pruned network, its history and the layer widths per step."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)


def select_channels(
    scores: Mapping[str, torch.Tensor], *, count: int, min_channels: int = 1
) -> dict[str, list[int]]:
    """The ``count`` lowest-scoring channels over all groups, leaving ``min_channels`` in each.

    Ties are broken by group order and channel index, so the choice is deterministic.
    """
    removable = sum(max(len(s) - min_channels, 0) for s in scores.values())
    if count > removable:
        raise PruningError(
            f"cannot remove {count} channels: only {removable} can go while every layer keeps "
            f"{min_channels}; ask for fewer filters per step or fewer steps"
        )
    names = list(scores)
    flat = torch.cat([scores[n].double() for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    local = torch.cat([torch.arange(len(scores[n])) for n in names])
    order = torch.argsort(flat, stable=True)
    left = {n: len(scores[n]) for n in names}
    plan: dict[str, list[int]] = {}
    for pos in order.tolist():
        if count == 0:
            break
        name = names[int(owner[pos])]
        if left[name] <= min_channels:
            continue
        plan.setdefault(name, []).append(int(local[pos]))
        left[name] -= 1
        count -= 1
    return {n: sorted(idx) for n, idx in plan.items()}


def _filters(groups: list[ChannelGroup]) -> int:
    return sum(g.size * g.filters_per_channel for g in groups)


def _channels_per_step(config: PruningConfig, channels0: int) -> int:
    if config.filters_per_step >= 1:
        return int(config.filters_per_step)
    return max(1, round(config.filters_per_step * channels0))


def _check_feasible(config: PruningConfig, groups: list[ChannelGroup], per_step: int) -> None:
    removable = sum(max(g.size - config.min_channels, 0) for g in groups)
    removable_filters = sum(
        max(g.size - config.min_channels, 0) * g.filters_per_channel for g in groups
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


def _sgd(model: nn.Module, lr: float, config: PruningConfig) -> torch.optim.Optimizer:
    # A fresh optimiser each time: channel removal replaces the parameter tensors.
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _batches(train_set: Dataset, config: PruningConfig, *, key: int):
    return epoch_batches(
        train_set,
        batch_size=config.batch_size,
        seed=config.seed,
        epoch=key * 1000,
        num_workers=config.num_workers,
    )


def _finetune(model, train_set, transform, config: PruningConfig, *, epochs: int, key: int):
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


def _score_and_remove(model, groups, *, step, train_set, transform, config, per_step, example):
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
    plan = select_channels(scores, count=per_step, min_channels=config.min_channels)
    remove_channels(model, plan, example_input=example)
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


def prune_iteratively(
    model: nn.Module,
    *,
    train_set: Dataset,
    train_transform: Callable,
    evaluate: Callable[[nn.Module], Mapping[str, Any]],
    example_input: torch.Tensor,
    config: PruningConfig,
    checkpoint_dir: str | Path | None = None,
    run_fingerprint: str = "",
    progress: bool = True,
) -> PruningResult:
    """Prune ``model`` step by step; see the module docstring for what a step does.

    ``evaluate(model)`` returns the metrics to record (a flat dict; the model is in eval mode).
    ``example_input`` is one batch of the input size (for tracing the dependency graph and
    counting MACs). Returns the final (pruned, optionally fine-tuned) network and the history.
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    example = example_input[:1].detach().to(device)
    image_size = int(example.shape[-1])
    groups0 = prunable_groups(model, example_input=example)
    channels0, filters0 = sum(g.size for g in groups0), _filters(groups0)
    per_step = _channels_per_step(config, channels0)
    _check_feasible(config, groups0, per_step)

    def record(stage, step, net, groups):
        filters = _filters(groups)
        net.eval()
        return {
            "step": step,
            "stage": stage,
            "channels_removed": channels0 - sum(g.size for g in groups),
            "filters_removed": filters0 - filters,
            "filters_removed_pct": 100.0 * (filters0 - filters) / filters0,
            "params": count_parameters(net),
            "macs": count_macs(net, image_size=image_size),
            **evaluate(net),
        }

    result = PruningResult(model=model)
    start = 1
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        saved, meta = load_model(ckpt)
        if meta.get("fingerprint") == run_fingerprint:
            saved.to(device)
            result = PruningResult(saved, list(meta["history"]), list(meta["layers"]))
            start = meta["step"] + 1
    if not result.history:
        result.history.append(record("original", 0, model, groups0))
        result.layers.append({"step": 0, "sizes": {g.name: g.size for g in groups0}})

    def save(step):
        if ckpt is not None and distributed.is_main():
            meta = {
                "fingerprint": run_fingerprint,
                "step": step,
                "history": result.history,
                "layers": result.layers,
            }
            save_model(ckpt, result.model, meta=meta)
        distributed.barrier()

    model = result.model
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    done = any(row["stage"] == "final" for row in result.history)
    bar = tqdm(
        total=config.max_steps,
        initial=start - 1,
        desc="pruning steps",
        disable=not (progress and distributed.is_main()),
    )
    step = start
    # Group membership never changes (every group keeps a channel); only sizes shrink. Tracing
    # the network once here and updating sizes from each plan saves a trace per step.
    groups = prunable_groups(model, example_input=example)
    while not done and step <= config.max_steps:
        removed = 1 - _filters(groups) / filters0
        if config.target_fraction is not None and removed >= config.target_fraction - 1e-9:
            break
        plan = _score_and_remove(
            model,
            groups,
            step=step,
            train_set=train_set,
            transform=train_transform,
            config=config,
            per_step=per_step,
            example=example,
        )
        groups = [dataclasses.replace(g, size=g.size - len(plan.get(g.name, ()))) for g in groups]
        result.history.append(record("pruned", step, model, groups))
        if config.finetune_epochs:
            tuned = copy.deepcopy(model)
            _finetune(
                tuned, train_set, train_transform, config, epochs=config.finetune_epochs, key=step
            )
            result.history.append(record("finetuned", step, tuned, groups))
            del tuned
        result.layers.append({"step": step, "sizes": {g.name: g.size for g in groups}})
        save(step)
        bar.update(1)
        bar.set_postfix(filters_removed=f"{result.history[-1]['filters_removed_pct']:.1f}%")
        step += 1
    bar.close()

    if not done:
        last_step = result.layers[-1]["step"]
        if config.final_finetune_epochs:
            _finetune(
                model,
                train_set,
                train_transform,
                config,
                epochs=config.final_finetune_epochs,
                key=10_000,
            )
        result.history.append(record("final", last_step, model, groups))
        save(last_step)
    result.model = model.eval()
    return result
