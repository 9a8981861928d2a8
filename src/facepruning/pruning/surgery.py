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
forced to zero, which computes exactly what the physically pruned one does. ``save_model`` and
``load_model`` store a pruned network as tensors plus its channel layout, readable with
``torch.load(weights_only=True)``.

After ``remove_channels`` parameters are new tensors: rebuild any optimizer.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from ..artifacts import load_torch, save_torch
from ..errors import ModelError, ParameterError, PruningError
from ..models import FaceNet, build_model

__all__ = [
    "ChannelGroup",
    "prunable_groups",
    "remove_channels",
    "zero_channels",
    "channel_layout",
    "save_model",
    "load_model",
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
                    f"unexpected {type(module).__name__} {names[module]} among the producers of "
                    f"the group of {names[root]}: surgery supports Conv2d and BatchNorm2d only"
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


def channel_layout(model: nn.Module) -> dict[str, dict[str, int]]:
    """Channel widths of every Conv2d, BatchNorm2d and Linear: ``{name: {"type", "in", "out",
    "groups"}}`` (plain types, as stored by :func:`save_model`)."""
    layout: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            layout[name] = {
                "type": "conv",
                "in": m.in_channels,
                "out": m.out_channels,
                "groups": m.groups,
            }
        elif isinstance(m, nn.BatchNorm2d):
            layout[name] = {"type": "bn", "in": m.num_features, "out": m.num_features, "groups": 1}
        elif isinstance(m, nn.Linear):
            layout[name] = {
                "type": "linear",
                "in": m.in_features,
                "out": m.out_features,
                "groups": 1,
            }
    return layout


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise ParameterError(f"{where}: key {k!r} must be a str or int")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise ParameterError(
            f"{where} is a {type(value).__name__}: keep meta to str, int, float, bool, None, "
            f"tensors, lists and dicts so the file loads with weights_only=True"
        )


def save_model(path: str | os.PathLike, model: FaceNet, *, meta: Mapping[str, Any]) -> None:
    """Save a (pruned) :class:`FaceNet` atomically as tensors and plain types.

    The file holds ``{"arch", "num_classes", "config", "state_dict", "layout", "meta"}``;
    ``config`` is the builder's keyword arguments and ``layout`` is :func:`channel_layout`.
    """
    if not isinstance(model, FaceNet):
        raise ModelError(f"save_model needs a FaceNet, not {type(model).__name__}")
    _check_plain(dict(meta), "meta")
    _check_plain(model.config, "model.config")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_torch(
        path,
        {
            "arch": model.arch,
            "num_classes": model.num_classes,
            "config": dict(model.config),
            "state_dict": state,
            "layout": channel_layout(model),
            "meta": dict(meta),
        },
    )


def _reshape(module: nn.Module, spec: Mapping[str, Any], name: str) -> None:
    cin, cout, groups = int(spec["in"]), int(spec["out"]), int(spec.get("groups", 1))
    if isinstance(module, nn.Conv2d):
        if cin % groups or cout % groups:
            raise ModelError(f"{name}: {cin} -> {cout} channels do not split into {groups} groups")
        module.in_channels, module.out_channels, module.groups = cin, cout, groups
        shape = (cout, cin // groups, *module.kernel_size)
        module.weight = nn.Parameter(torch.empty(shape, dtype=module.weight.dtype))
        if module.bias is not None:
            module.bias = nn.Parameter(torch.empty(cout, dtype=module.bias.dtype))
    elif isinstance(module, nn.BatchNorm2d):
        module.num_features = cout
        if module.affine:
            module.weight = nn.Parameter(torch.empty(cout))
            module.bias = nn.Parameter(torch.empty(cout))
        if module.track_running_stats:
            module.running_mean = torch.zeros(cout)
            module.running_var = torch.ones(cout)
    elif isinstance(module, nn.Linear):
        module.in_features, module.out_features = cin, cout
        module.weight = nn.Parameter(torch.empty(cout, cin, dtype=module.weight.dtype))
        if module.bias is not None:
            module.bias = nn.Parameter(torch.empty(cout, dtype=module.bias.dtype))
    else:
        raise ModelError(f"{name} is a {type(module).__name__}, the layout says {spec['type']}")


def load_model(path: str | os.PathLike) -> tuple[FaceNet, dict[str, Any]]:
    """Load a :func:`save_model` file: ``(model in eval mode, meta)``.

    Builds the unpruned architecture, reshapes its layers to the saved layout (a depthwise conv
    stays depthwise) and loads the state dict strictly. The file is read with
    ``torch.load(weights_only=True)``, so loading never runs code from it. A truncated or corrupt
    file raises :class:`~facepruning.errors.ArtifactError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found: write it with save_model()")
    # A truncated or corrupt file raises ArtifactError from load_torch, naming the file and fix.
    ckpt = load_torch(
        path,
        remedy="the stage that writes it (dvc repro, or python -m facepruning train / prune)",
    )
    if not isinstance(ckpt, Mapping):
        raise ModelError(f"{path} is not a save_model() file: it holds a {type(ckpt).__name__}")
    missing = {"arch", "num_classes", "state_dict", "layout"} - set(ckpt)
    if missing:
        raise ModelError(f"{path} is not a save_model() file: it lacks {sorted(missing)}")
    model = build_model(ckpt["arch"], num_classes=ckpt["num_classes"], **ckpt.get("config", {}))
    modules = dict(model.named_modules())
    for name, spec in ckpt["layout"].items():
        if name not in modules:
            raise ModelError(f"{path}: layer {name} does not exist in {ckpt['arch']}")
        _reshape(modules[name], spec, name)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path}: the state dict does not fit the saved layout: {e}") from e
    return model.eval(), dict(ckpt.get("meta", {}))
