"""The iterative pruning loop of both papers, for any network: score, remove, go on training.

One *step*:

1. score every prunable channel group over the step's mini-batches with an
   :class:`~facepruning.pruning.importance.Importance` (with an ``optimizer``, the network trains
   on them in between, as MATLAB's ``taylorPrunableNetwork`` loop does);
2. rank all channels of all groups together (by default after Molchanov's layer-wise L2
   normalisation) and remove the lowest ``step_fraction`` of the initial channels, never emptying
   a group (each keeps ``min_channels``; with ``channel_multiple`` m > 1 a multiple of m, so a
   step removes up to m - 1 channels more than asked: see :func:`select_channels`) and never
   touching the ``ignored`` layers; then ``after_removal(model, step)`` (e.g. re-estimate the
   BatchNorm statistics, which described the larger network);
3. record the smaller network as it is ("pruned"), and, with ``finetune``, a copy after
   ``finetune(copy, step)`` ("finetuned"): the papers report both. The loop continues from the
   pruned network, so the fine-tuned copies are snapshots, not the trunk.

After the last step (``steps`` done, or ``target_fraction`` of the filters gone),
``final_finetune(model)`` trains the trunk and a "final" row is recorded. ``step_fraction=0``
removes nothing: a no-pruning control that trains exactly like a pruning run.

The loop knows nothing of faces, file paths or global random state: the data, the loss and the
optimiser come in as arguments or callables, randomness drawn by a criterion comes from
per-step generators derived from ``seed`` (so a resumed run draws what an uninterrupted one
does), and parameters and MACs are counted on ``example_inputs`` as given. ``score_pass``
replaces the default scoring pass (forward, backward, optimiser step per mini-batch) when a
caller trains its own way (the face pipeline: data-parallel, on-the-fly augmentation).

With ``checkpoint_dir`` each step is saved (state dict plus channel layout, with the run
identity it belongs to: :class:`~facepruning.checkpoint.RunCheckpoint`); a run interrupted
anywhere resumes after its last finished step and reaches the same result, for any network.

Under torch.distributed (``torchrun``) every rank runs the loop: the score sums and counts are
summed over ranks before ranking (so every rank removes the same channels), and rank 0 writes
checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import channels, distributed
from ..checkpoint import RunCheckpoint
from ..errors import PruningError
from ..models import apply_pruned_state, count_macs, count_parameters, pruned_state
from ..progress import progress_bar
from ..training import epoch_generator
from .importance import Importance, importance_of
from .scoring import ImportanceAccumulator
from .surgery import ChannelGroup, prunable_groups, remove_channels

__all__ = ["PruningResult", "select_channels", "prune_iteratively", "channels_per_step"]

log = logging.getLogger(__name__)

STAGES = ("original", "pruned", "finetuned", "final")

#: the random stream of a step's criterion draws (epoch_generator's ``stream``)
_SCORE_STREAM = 2


@dataclass
class PruningResult:
    """What the loop returns: the pruned network, its history and the layer widths per step."""

    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)


def _floor(size: int, min_channels: int, multiple: int) -> int:
    """The fewest channels a group of ``size`` may keep (``size``: it cannot shrink)."""
    return int(channels.floor(size, min_channels, multiple))


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

    ``channel_multiple`` m > 1: every group the step prunes ends on a multiple of m channels (a
    group smaller than m is never pruned; one whose size is not yet a multiple first drops to one;
    a group the step leaves alone keeps its size, so all groups are on multiples of m only when m
    divides their original sizes). The ``count``
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
            f"{min_channels} (and a multiple of {channel_multiple}); ask for fewer channels"
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
        lower, upper = channels.rounded_share(len(scores[name]), len(idx), multiple, cap[name])
        down[name], up[name] = int(lower), int(upper)
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


def channels_per_step(step_fraction: float, channels: int) -> int:
    """Channels one step removes: ``step_fraction`` >= 1 is a count, a share (< 1) of
    ``channels`` otherwise (at least one), 0 none (the no-pruning control)."""
    if step_fraction < 0 or not math.isfinite(step_fraction):
        raise PruningError(f"step_fraction={step_fraction!r}: give a count, a share or 0")
    if step_fraction == 0:
        return 0
    if step_fraction >= 1:
        return int(step_fraction)
    return max(1, round(step_fraction * channels))


@dataclass
class _Selection:
    """How much one step removes and what every group keeps."""

    per_step: int
    steps: int
    target_fraction: float | None
    min_channels: int
    channel_multiple: int

    def check(self, groups: list[ChannelGroup]) -> None:
        m = self.channel_multiple
        off = [g.name for g in groups if g.size % m]
        if off:  # said, not refused: the groups a step prunes still land on multiples
            log.info(
                "channel_multiple=%d does not divide the width of %d of %d groups (%s): each stays "
                "off the multiple until a step prunes it",
                m, len(off), len(groups), ", ".join(off[:3]) + (", ..." if len(off) > 3 else ""),
            )  # fmt: skip
        removable = sum(_removable(g.size, self.min_channels, m) for g in groups)
        if self.target_fraction is not None:
            removable_filters = sum(
                _removable(g.size, self.min_channels, m) * g.filters_per_channel for g in groups
            )
            most = removable_filters / max(_filters(groups), 1)
            if self.target_fraction > most:
                raise PruningError(
                    f"target_fraction {self.target_fraction:.3f} is impossible: at most "
                    f"{most:.3f} of the prunable filters can go while every layer keeps "
                    f"{self.min_channels} channels (and a multiple of {m}); lower target_fraction"
                )
        elif self.per_step * self.steps > removable:
            fits = removable // self.per_step
            advice = (
                f"lower steps to {fits}" if fits >= 1 else "lower step_fraction"
            ) + f", lower channel_multiple ({m}) or min_channels, or set target_fraction"
            raise PruningError(
                f"{self.steps} steps of {self.per_step} channels ask for "
                f"{self.per_step * self.steps}, but only {removable} channels can be removed: "
                + advice
            )

    def plan(self, scores, groups: list[ChannelGroup]) -> dict[str, list[int]]:
        # Rounding to multiples may have taken more than per_step before: never ask for more
        # than can still go (the feasibility check counted whole steps of per_step).
        left = sum(_removable(g.size, self.min_channels, self.channel_multiple) for g in groups)
        return select_channels(
            scores,
            count=min(self.per_step, left),
            min_channels=self.min_channels,
            channel_multiple=self.channel_multiple,
        )


def _layer_row(step: int, groups: list[ChannelGroup]) -> dict[str, Any]:
    return {"step": step, "sizes": {g.name: g.size for g in groups}}


@dataclass
class _Recorder:
    """Turns a network at some stage of the loop into one history row."""

    evaluate: Callable[[nn.Module], Mapping[str, Any]] | None
    channels0: int
    filters0: int
    example: torch.Tensor

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
            "macs": count_macs(net, self.example),
            **(self.evaluate(net) if self.evaluate is not None else {}),
        }


ScorePass = Callable[[nn.Module, ImportanceAccumulator, int], None]


def default_score_pass(
    batches: Iterable | Callable[[int], Iterable],
    *,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
) -> ScorePass:
    """The scoring pass of a step: for every mini-batch of ``batches`` (an iterable, or a
    function of the step giving one), ``loss_fn(model, batch).backward()`` (default: cross-entropy
    of ``model(x)`` against ``y`` for ``batch = (x, y)``), the criterion reads it, and with
    ``optimizer`` (a factory, e.g. ``lambda p: torch.optim.SGD(p, lr=1e-3)``: removal replaces
    the parameters, so each step builds a new one) the weights take a step. Without an optimiser
    the network is scored in eval mode, so its BatchNorm statistics stay as they are.

    It runs in one process: under ``torchrun`` each rank scores its own ``batches`` and the
    loop sums the scores over ranks, but the weights are not kept in step (no DDP wrapper);
    for data-parallel training pass a ``score_pass`` of your own, as the face pipeline does."""
    loss_of = loss_fn or (lambda model, batch: F.cross_entropy(model(batch[0]), batch[1]))

    def score_pass(model: nn.Module, accumulator: ImportanceAccumulator, step: int) -> None:
        was_training = model.training
        model.train(optimizer is not None)
        opt = optimizer(model.parameters()) if optimizer is not None else None
        try:
            for batch in batches(step) if callable(batches) else batches:
                model.zero_grad(set_to_none=True)
                loss_of(model, batch).backward()
                accumulator.after_backward()
                if opt is not None:
                    opt.step()
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)

    return score_pass


@dataclass
class _Loop:
    """What every step of one run needs besides the network."""

    importance: Importance
    normalize: bool
    selection: _Selection
    score_pass: ScorePass | None
    after_removal: Callable[[nn.Module, int], None] | None
    finetune: Callable[[nn.Module, int], None] | None
    final_finetune: Callable[[nn.Module], None] | None
    example: torch.Tensor
    recorder: _Recorder
    checkpoint: RunCheckpoint
    seed: int
    ignored_names: list[str] | None = None

    def ignored(self, model: nn.Module) -> list[nn.Module] | None:
        """The layers never pruned, looked up by name in ``model`` (a resumed copy too)."""
        if self.ignored_names is None:
            return None
        return [model.get_submodule(n) for n in self.ignored_names]

    def target_reached(self, groups: list[ChannelGroup]) -> bool:
        target = self.selection.target_fraction
        removed = 1 - _filters(groups) / self.recorder.filters0
        return target is not None and removed >= target - 1e-9

    def scores(self, model: nn.Module, groups: list[ChannelGroup], step: int) -> dict:
        accumulator = ImportanceAccumulator(
            model,
            groups,
            importance=self.importance,
            generator=epoch_generator(self.seed, step, _SCORE_STREAM),
        )
        with accumulator:
            if self.score_pass is not None:
                self.score_pass(model, accumulator, step)
        distributed.all_reduce_importance(accumulator)  # every rank ranks the same totals
        if self.importance.needs_data and accumulator.count == 0:
            raise PruningError(
                f"{self.importance!r} needs data, but step {step} scored no mini-batch: pass "
                "score_batches (or a score_pass that runs some)"
            )
        return accumulator.scores(normalize=self.normalize)

    def one(self, result: PruningResult, groups: list[ChannelGroup], step: int) -> list:
        """Score, remove, record "pruned" (and "finetuned"), checkpoint; return the groups."""
        model = result.model
        plan = self.selection.plan(self.scores(model, groups, step), groups)
        if plan:
            remove_channels(model, plan, example_input=self.example, ignored=self.ignored(model))
        if self.after_removal is not None:
            self.after_removal(model, step)
        groups = [dataclasses.replace(g, size=g.size - len(plan.get(g.name, ()))) for g in groups]
        result.history.append(self.recorder.row("pruned", step, model, groups))
        if self.finetune is not None:
            tuned = copy.deepcopy(model)
            self.finetune(tuned, step)
            result.history.append(self.recorder.row("finetuned", step, tuned, groups))
            del tuned
        result.layers.append(_layer_row(step, groups))
        self.save(result, step)
        return groups

    def finish(self, result: PruningResult, groups: list[ChannelGroup]) -> None:
        """The optional final fine-tuning of the trunk, its "final" row and checkpoint."""
        last_step = result.layers[-1]["step"]
        if self.final_finetune is not None:
            self.final_finetune(result.model)
        result.history.append(self.recorder.row("final", last_step, result.model, groups))
        self.save(result, last_step)

    def save(self, result: PruningResult, step: int) -> None:
        if self.checkpoint.path is None:
            return
        state = {"step": step, "history": result.history, "layers": result.layers}
        self.checkpoint.save({**pruned_state(result.model), **state})

    def resume(self, model: nn.Module) -> tuple[PruningResult, int] | None:
        """The saved result (``model`` reshaped to it, in place) and the next step, or None."""
        state = self.checkpoint.load()
        if state is None:
            return None
        apply_pruned_state(model, state, source=str(self.checkpoint.path))
        return PruningResult(model, list(state["history"]), list(state["layers"])), state[
            "step"
        ] + 1


def _names_of(model: nn.Module, modules: Sequence[nn.Module] | None) -> list[str] | None:
    if modules is None:
        return None
    names = {m: n for n, m in model.named_modules()}
    missing = [type(m).__name__ for m in modules if m not in names]
    if missing:
        raise PruningError(f"ignored layers {missing} are not modules of the model being pruned")
    return [names[m] for m in modules]


def _loop_identity(run_identity, model, importance, *settings) -> dict[str, Any]:
    """The checkpoint's identity: the caller's ``run_identity`` plus every loop setting and a
    digest of the starting weights, so a checkpoint of other settings is never resumed."""
    names = ("steps", "step_fraction", "target_fraction", "normalize", "min_channels")
    names += ("channel_multiple", "ignored", "seed")
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + str(tuple(tensor.shape)).encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    loop = {"importance": repr(importance), **dict(zip(names, settings, strict=True))}
    loop["initial_state"] = digest.hexdigest()[:16]
    return {**dict(run_identity or {}), "loop": loop}


def _run_steps(result: PruningResult, loop: _Loop, *, start: int, progress: bool) -> None:
    steps = loop.selection.steps
    bar = progress_bar(
        total=steps,
        initial=start - 1,
        desc="pruning steps",
        disable=not (progress and distributed.is_main()),
    )
    # Group membership never changes (every group keeps a channel); only sizes shrink. Tracing
    # the network once here and updating sizes from each plan saves a trace per step.
    groups = prunable_groups(
        result.model, example_input=loop.example, ignored=loop.ignored(result.model)
    )
    for step in range(start, steps + 1):
        if loop.target_reached(groups):
            break
        groups = loop.one(result, groups, step)
        bar.update(1)
        bar.set_postfix(filters_removed=f"{result.history[-1]['filters_removed_pct']:.1f}%")
    bar.close()
    loop.finish(result, groups)


def prune_iteratively(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    importance: str | Importance = "taylor_activation",
    steps: int,
    step_fraction: float = 0.05,
    target_fraction: float | None = None,
    score_batches: Iterable | Callable[[int], Iterable] | None = None,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
    score_pass: ScorePass | None = None,
    after_removal: Callable[[nn.Module, int], None] | None = None,
    finetune: Callable[[nn.Module, int], None] | None = None,
    final_finetune: Callable[[nn.Module], None] | None = None,
    evaluate: Callable[[nn.Module], Mapping[str, Any]] | None = None,
    normalize: bool = True,
    min_channels: int = 1,
    channel_multiple: int = 1,
    ignored: Sequence[nn.Module] | None = None,
    checkpoint_dir: str | Path | None = None,
    run_identity: Mapping[str, Any] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> PruningResult:
    """Prune ``model`` (in place) step by step; the module docstring says what a step does.

    ``example_inputs``: one batch as the network takes it (for tracing and counting MACs).
    ``importance``: a registered name or an :class:`Importance`. ``steps``: most steps.
    ``step_fraction``: channels per step, a share (< 1) of the initial prunable channels or a
    count (>= 1); 0 removes nothing. ``target_fraction``: stop once this share of the prunable
    filters is gone. ``score_batches`` / ``loss_fn`` / ``optimizer``: the scoring pass of
    :func:`default_score_pass`; or ``score_pass(model, accumulator, step)`` for your own.
    ``after_removal(model, step)``, ``finetune(copy, step)``, ``final_finetune(model)``: your
    training, called as the module docstring says. ``evaluate(model)``: the metrics to record
    (a flat dict; the model is in eval mode). ``ignored``: the layers that must keep their outputs
    (a classifier; a FaceNet's is ignored without it). ``checkpoint_dir``, ``run_identity``: resume
    (:class:`~facepruning.checkpoint.RunCheckpoint`). ``seed``: the criterion's random draws.

    Returns the :class:`PruningResult`: the network, one history row per stage and step, and the
    widths of every group per step. Example (torchvision's ResNet18, 3 steps of 10%)::

        result = facepruning.prune_iteratively(
            net, torch.randn(1, 3, 64, 64), importance="taylor_activation", steps=3,
            step_fraction=0.1, score_batches=batches, ignored=[net.fc],
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9))
    """
    imp = importance_of(importance)
    if score_pass is None and (score_batches is not None or not imp.needs_data):
        score_pass = (
            default_score_pass(score_batches, loss_fn=loss_fn, optimizer=optimizer)
            if score_batches is not None
            else None
        )
    if score_pass is None and imp.needs_data:
        raise PruningError(
            f"{imp!r} scores channels on data: pass score_batches (mini-batches) or score_pass"
        )
    if steps < 1:
        raise PruningError(f"steps={steps!r}: run at least one step")
    device = next(model.parameters()).device
    example = example_inputs[:1].detach().to(device)
    ignored_names = _names_of(model, ignored)
    groups0 = prunable_groups(model, example_input=example, ignored=ignored)
    if not groups0:
        raise PruningError(
            f"{type(model).__name__} has no prunable channel group (every convolution's output "
            "is ignored or feeds an ignored layer): pass fewer layers in ignored"
        )
    recorder = _Recorder(evaluate, sum(g.size for g in groups0), _filters(groups0), example)
    selection = _Selection(
        channels_per_step(step_fraction, recorder.channels0),
        steps,
        target_fraction,
        min_channels,
        channel_multiple,
    )
    selection.check(groups0)
    loop = _Loop(
        imp,
        normalize,
        selection,
        score_pass,
        after_removal,
        finetune,
        final_finetune,
        example,
        recorder,
        RunCheckpoint.in_folder(
            checkpoint_dir,
            _loop_identity(
                run_identity,
                model,
                imp,
                steps,
                step_fraction,
                target_fraction,
                normalize,
                min_channels,
                channel_multiple,
                ignored_names,
                seed,
            )  # fmt: skip
            if checkpoint_dir
            else None,
            remedy="the pruning run",
        ),
        seed,
        ignored_names,
    )
    result, start = loop.resume(model) or (PruningResult(model=model), 1)
    if not result.history:
        result.history.append(recorder.row("original", 0, model, groups0))
        result.layers.append(_layer_row(0, groups0))
    if not any(row["stage"] == "final" for row in result.history):
        _run_steps(result, loop, start=start, progress=progress)
    result.model = result.model.eval()
    return result
