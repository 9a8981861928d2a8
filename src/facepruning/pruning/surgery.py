"""Channel surgery: which filters must go together, and removing them physically.

Pruning a filter of a convolution removes one output channel, and with it the matching slice of
everything that carries that channel: the following BatchNorm, the input channel of every
consumer, and any layer coupled to it. This module finds those couplings with torch-pruning's
``DependencyGraph`` and removes channels in place; it does not decide which channels to remove
(that is the job of :mod:`~facepruning.pruning.scoring` and :mod:`~facepruning.pruning.loop`).

A :class:`ChannelGroup` is one set of channels that can only be removed together:

- an ordinary conv + BN (e.g. a Fire module's squeeze, a ResNet bottleneck's conv1 or conv2):
  one filter per channel;
- SqueezeNet's Fire concat: ``expand1x1`` and ``expand3x3`` are two groups whose channels sit at
  offsets ``[0, e1)`` and ``[e1, e1 + e3)`` of the concat that feeds the next squeeze;
- MobileNetV2's expansion conv and the depthwise conv that follows it (a depthwise conv has one
  filter per input channel): two filters per channel;
- a residual stream (MobileNetV2's projection convs of one stage, ResNet50's conv3 of every
  bottleneck of a stage plus the downsample conv): every conv writing into the sum, removed
  together.

The identity classifier (``FaceNet.classifier_modules()``: SqueezeNet's conv10 + BN, the Linear
heads) is never a group; its input channels shrink when the layers feeding it are pruned.

Any other torchvision-style CNN (Conv2d, BatchNorm2d, concat, residual add, Linear head) works
too: name the layers whose outputs must stay as they are, e.g.
``prunable_groups(resnet18, ignored=[resnet18.fc])`` (``ignored=[]`` prunes everything). For a
FaceNet the classifier is ignored without being named.

``zero_channels`` gives the "masked original": the unpruned network with the same channels
forced to zero, which computes exactly what the physically pruned one does. Saving and loading a
pruned network (tensors plus its channel layout) is :mod:`facepruning.models.io`'s job.

After ``remove_channels`` parameters are new tensors: rebuild any optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from ..errors import ModelError, PruningError

__all__ = [
    "ChannelGroup",
    "prunable_groups",
    "remove_channels",
    "zero_channels",
]

_DEFAULT_INPUT_SIZE = 64


@dataclass
class ChannelGroup:
    """One set of coupled channels (filters that can only be removed together).

    ``name``: qualified name of the group's root conv (the first of ``convs`` in module order);
    the key of this group in a pruning plan. ``size``: current number of channels. ``convs``:
    the convolutions whose output channels are these channels (the filters removed together).
    ``score_points``: for each conv, the module whose forward output carries exactly these
    channels in this order (the BatchNorm right after the conv, else the conv itself); read a
    Taylor activation score there.
    """

    name: str
    size: int
    convs: list[str] = field(default_factory=list)
    score_points: list[str] = field(default_factory=list)

    @property
    def filters_per_channel(self) -> int:
        """How many filters go when one channel of this group is removed."""
        return len(self.convs)


def _example(model: nn.Module, example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is not None:
        return example_input
    p = next(model.parameters())
    s = _DEFAULT_INPUT_SIZE
    return torch.zeros(1, 3, s, s, device=p.device, dtype=p.dtype)


def _ignored(model: nn.Module, ignored: Sequence[nn.Module] | None) -> list[nn.Module]:
    """The layers never pruned: ``ignored`` (with their submodules) plus a FaceNet's classifier."""
    has_head = hasattr(model, "classifier_modules")
    if ignored is None and not has_head:
        raise ModelError(
            f"which layers of this {type(model).__name__} must keep their outputs? Pass "
            "ignored=[...] with its classifier, e.g. prunable_groups(model, ignored=[model.fc]) "
            "(ignored=[] prunes every conv)"
        )
    modules = list(model.classifier_modules()) if has_head else []
    for m in ignored or ():
        if not isinstance(m, nn.Module):
            raise ModelError(f"ignored holds a {type(m).__name__}: give the modules themselves")
        modules.extend(m.modules())
    return list(dict.fromkeys(modules))


def _graph(model: nn.Module, example_input: torch.Tensor | None) -> tp.DependencyGraph:
    """Trace ``model`` in eval mode (BatchNorm statistics untouched) with gradients on."""
    x = _example(model, example_input)
    was_training = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    try:
        for p in frozen:  # tracing follows autograd: frozen layers would drop out of the graph
            p.requires_grad_(True)
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    finally:
        for p in frozen:
            p.requires_grad_(False)
        model.train(was_training)


def _groups(
    model: nn.Module, dg: tp.DependencyGraph, ignored: Sequence[nn.Module] | None
) -> list[ChannelGroup]:
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, n in enumerate(names.values())}
    head = _ignored(model, ignored)
    head_ids = {id(m) for m in head}
    out: list[ChannelGroup] = []
    for g in dg.get_all_groups(ignored_layers=head, root_module_types=(nn.Conv2d,)):
        root = g[0].dep.target.module
        size = dg.get_out_channels(root)
        convs, bns = [], []
        for item in g.items:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            if not dg.is_out_channel_pruning_fn(dep.handler) or module not in names:
                continue  # consumers' input channels, and parameter-free ops (ReLU, concat, add)
            if id(module) in head_ids:
                raise PruningError(f"torch-pruning put ignored layer {names[module]} in a group")
            if isinstance(module, nn.Conv2d):
                convs.append(module)
            elif isinstance(module, nn.BatchNorm2d):
                bns.append(module)
            else:
                raise PruningError(
                    f"layer {names[module]} ({type(module).__name__}) shares its output channels "
                    f"with {names[root]}, and only Conv2d and BatchNorm2d layers can be narrowed "
                    f"here: pass ignored=[model.get_submodule({names[module]!r})] (and the "
                    "layers it feeds) to keep that part of the network as it is"
                )
            n = dg.get_out_channels(module)
            if (
                n != size
                or list(idxs) != list(range(size))
                or list(item.root_idxs) != list(range(size))
            ):
                raise PruningError(
                    f"{names[module]} does not share channel indices with {names[root]} "
                    f"({n} channels vs {size}): torch-pruning grouped them unexpectedly"
                )
        convs.sort(key=lambda m: order[names[m]])
        bn_set = set(bns)
        points = []
        for conv in convs:
            nxt = [n.module for n in dg.module2node[conv].outputs]
            if len(nxt) == 1 and nxt[0] in bn_set:
                points.append(names[nxt[0]])
            else:
                points.append(names[conv])
        conv_names = [names[c] for c in convs]
        out.append(
            ChannelGroup(name=conv_names[0], size=size, convs=conv_names, score_points=points)
        )
    out.sort(key=lambda g: order[g.name])
    return out


def prunable_groups(
    model: nn.Module,
    *,
    example_input: torch.Tensor | None = None,
    ignored: Sequence[nn.Module] | None = None,
) -> list[ChannelGroup]:
    """All prunable channel groups of ``model``, in module order.

    ``example_input`` is a batch used to trace the network (default: one 3x64x64 zero image;
    the groups do not depend on the spatial size). Tracing runs in eval mode, so BatchNorm
    running statistics are not changed. ``ignored``: layers whose outputs must not change (a
    classifier; required for networks other than a :class:`FaceNet`, whose classifier is always
    ignored). Raises :class:`PruningError` if torch-pruning couples producers whose channels do
    not line up index by index.
    """
    return _groups(model, _graph(model, example_input), ignored)


def _check_plan(
    plan: Mapping[str, Sequence[int]], groups: Mapping[str, ChannelGroup]
) -> dict[str, list[int]]:
    clean: dict[str, list[int]] = {}
    for name, idxs in plan.items():
        if name not in groups:
            some = ", ".join(list(groups)[:4])
            raise PruningError(
                f"unknown channel group {name!r}: use the names from prunable_groups() "
                f"(e.g. {some}, ...)"
            )
        size = groups[name].size
        if isinstance(idxs, torch.Tensor):
            idxs = idxs.tolist()
        values = list(idxs)
        if any(isinstance(i, bool) or not isinstance(i, Integral) for i in values):
            raise PruningError(f"group {name!r}: channel indices must be integers, got {values}")
        values = [int(i) for i in values]
        bad = [i for i in values if not 0 <= i < size]
        if bad:
            raise PruningError(
                f"group {name!r} has {size} channels: indices {bad} are out of range [0, {size})"
            )
        if len(set(values)) != len(values):
            raise PruningError(f"group {name!r}: duplicate channel indices in {values}")
        if len(values) >= size:
            raise PruningError(
                f"removing {len(values)} of the {size} channels of group {name!r} would leave it "
                f"empty: keep at least one channel"
            )
        if values:
            clean[name] = sorted(values)
    return clean


def remove_channels(
    model: nn.Module,
    plan: Mapping[str, Sequence[int]],
    *,
    example_input: torch.Tensor | None = None,
    ignored: Sequence[nn.Module] | None = None,
) -> None:
    """Physically remove channels, in place: ``plan`` maps group names to channel indices.

    Indices are those of the group before this call (as in ``prunable_groups``). Each group's
    convs lose those filters (weights and biases), its BatchNorms those entries (affine
    parameters and running statistics), and every consumer those input channels (with the
    concat offsets of SqueezeNet's Fire modules handled). The whole plan is checked before
    anything changes: an unknown group, out-of-range or duplicate indices, or a group left with
    no channel raise :class:`PruningError`. ``ignored`` as in :func:`prunable_groups`.
    """
    dg = _graph(model, example_input)
    groups = {g.name: g for g in _groups(model, dg, ignored)}
    clean = _check_plan(plan, groups)
    modules = dict(model.named_modules())
    for name, idxs in clean.items():
        conv = modules[name]
        before = conv.out_channels
        pruner = dg.get_pruner_of_module(conv)
        # get_pruning_group refreshes concat/split offsets from the current shapes, so groups
        # pruned earlier in this loop are accounted for.
        dg.get_pruning_group(conv, pruner.prune_out_channels, idxs).prune()
        if conv.out_channels != before - len(idxs):
            raise PruningError(f"torch-pruning did not remove {len(idxs)} channels from {name}")


@contextlib.contextmanager
def zero_channels(
    model: nn.Module,
    plan: Mapping[str, Sequence[int]],
    *,
    example_input: torch.Tensor | None = None,
    groups: Sequence[ChannelGroup] | None = None,
    ignored: Sequence[nn.Module] | None = None,
) -> Iterator[None]:
    """Within the block, the plan's channels read as zero at every score point of their group.

    The network then computes what ``remove_channels(model, plan)`` would give (the "masked
    original"), with the same layer widths: a teaching and testing aid. Forward hooks are
    removed on exit. The plan is checked as in :func:`remove_channels`. Pass ``groups`` (from
    :func:`prunable_groups` on this model) to skip tracing the network again, or ``ignored``
    as in :func:`prunable_groups` to trace it.
    """
    if groups is None:
        groups = prunable_groups(model, example_input=example_input, ignored=ignored)
    groups = {g.name: g for g in groups}
    clean = _check_plan(plan, groups)
    handles = []

    def make_hook(idx: list[int]):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            index = torch.as_tensor(idx, device=output.device)
            return output.index_fill(1, index, 0.0)

        return hook

    try:
        for name, idxs in clean.items():
            for point in groups[name].score_points:
                module = model.get_submodule(point)
                handles.append(module.register_forward_hook(make_hook(idxs)))
        yield
    finally:
        for h in handles:
            h.remove()
