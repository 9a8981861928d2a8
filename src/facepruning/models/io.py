"""Saving and loading networks whose layers have been narrowed by pruning.

A pruned network no longer matches its builder's shapes, so a state dict alone cannot be loaded
into a freshly built copy. Every file written here therefore holds the state dict *and* the
channel layout (:func:`channel_layout`: the widths of every Conv2d, BatchNorm2d and Linear), and
loading first reshapes a fresh network to that layout, then loads the weights strictly. Files hold
only tensors and plain types and are read with ``torch.load(weights_only=True)``: loading never
runs code from them.

Two forms:

- :func:`save_pruned` / :func:`load_pruned`: any ``nn.Module``; the caller builds the unpruned
  architecture again and :func:`load_pruned` reshapes it (a torchvision ``resnet18``, your own
  network). :func:`pruned_state` / :func:`apply_pruned_state` are the same as dicts, for
  checkpoints that carry more than the network.
- :func:`save_model` / :func:`load_model`: a :class:`~facepruning.models.FaceNet`, whose file also
  records the architecture and builder arguments, so loading needs nothing but the path.

This lives in ``models`` rather than ``pruning`` so that training and export, which save and load
networks, do not depend on the pruning method.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifacts import load_torch, save_torch
from ..errors import ModelError, ParameterError
from .build import build_model
from .facenet import FaceNet

__all__ = [
    "channel_layout",
    "pruned_state",
    "apply_pruned_state",
    "save_pruned",
    "load_pruned",
    "save_model",
    "load_model",
]

#: the widest layer a layout may ask for: a crafted file must not make loading allocate terabytes
MAX_CHANNELS = 1 << 16


def channel_layout(model: nn.Module) -> dict[str, dict[str, int]]:
    """Channel widths of every Conv2d, BatchNorm2d and Linear: ``{name: {"type", "in", "out",
    "groups"}}`` (plain types, as stored by :func:`save_pruned` and :func:`save_model`)."""
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


def _width(spec: Mapping[str, Any], key: str, name: str) -> int:
    value = spec.get(key, 1 if key == "groups" else None)
    if isinstance(value, bool) or not isinstance(value, Integral) or not 0 < value <= MAX_CHANNELS:
        raise ModelError(
            f"layout of {name}: {key}={value!r} is not a channel count in [1, {MAX_CHANNELS}]; "
            "the file is damaged or not written by save_pruned/save_model"
        )
    return int(value)


def _reshape(module: nn.Module, spec: Mapping[str, Any], name: str) -> None:
    if not isinstance(spec, Mapping):
        raise ModelError(f"layout of {name} is a {type(spec).__name__}, not a dict of widths")
    cin, cout, groups = (_width(spec, k, name) for k in ("in", "out", "groups"))
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
        raise ModelError(f"{name} is a {type(module).__name__}, the layout says {spec.get('type')}")


def pruned_state(model: nn.Module) -> dict[str, Any]:
    """``{"state_dict", "layout"}`` of ``model``, on the CPU: what :func:`apply_pruned_state`
    needs."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "layout": channel_layout(model)}


def apply_pruned_state(
    model: nn.Module, state: Mapping[str, Any], *, source: str = ""
) -> nn.Module:
    """Reshape ``model`` (in place) to ``state["layout"]`` and load ``state["state_dict"]``
    strictly; returns ``model``. ``source`` names the file in error messages."""
    where = f"{source}: " if source else ""
    for key in ("state_dict", "layout"):
        if not isinstance(state.get(key), Mapping):
            raise ModelError(
                f"{where}no {key!r} dict: not a file written by save_pruned/save_model"
            )
    modules = dict(model.named_modules())
    device = next(model.parameters(), torch.empty(0)).device
    for name, spec in state["layout"].items():
        if name not in modules:
            raise ModelError(
                f"{where}layer {name} does not exist in this {type(model).__name__}: build the "
                "same architecture the file was saved from"
            )
        _reshape(modules[name], spec, name)
    try:
        model.load_state_dict(state["state_dict"], strict=True)
    except RuntimeError as e:
        reason = " ".join(str(e).split())[:300]
        raise ModelError(f"{where}the weights do not fit the saved layout: {reason}") from e
    return model.to(device)


def save_pruned(model: nn.Module, path: str | os.PathLike, *, meta: Mapping[str, Any] = ()) -> None:
    """Save any (pruned) network atomically: its state dict, its channel layout and ``meta``
    (plain types). Load it with :func:`load_pruned` into a freshly built copy of the
    architecture::

        facepruning.save_pruned(pruned, "resnet18-pruned.pt")
        model = facepruning.load_pruned("resnet18-pruned.pt", torchvision.models.resnet18())
    """
    meta = dict(meta)
    _check_plain(meta, "meta")
    save_torch(path, {**pruned_state(model), "meta": meta})


def _read(path: str | os.PathLike, writer: str) -> Mapping[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} not found: write it with {writer}()")
    # A truncated or corrupt file raises ArtifactError from load_torch, naming the file and fix.
    ckpt = load_torch(
        path,
        remedy="the stage that writes it (dvc repro, or python -m facepruning train / prune)",
    )
    if not isinstance(ckpt, Mapping):
        raise ModelError(f"{path} is not a {writer}() file: it holds a {type(ckpt).__name__}")
    return ckpt


def load_pruned(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load a :func:`save_pruned` (or :func:`save_model`) file into ``model``, a freshly built
    network of the same architecture: its layers are reshaped to the saved layout, then the
    weights are loaded strictly (``weights_only=True``). Returns ``model`` in eval mode; the
    file's ``meta`` is in ``model.pruning_meta``."""
    ckpt = _read(path, "save_pruned")
    apply_pruned_state(model, ckpt, source=str(path))
    model.pruning_meta = dict(ckpt.get("meta", {}))
    return model.eval()


def save_model(path: str | os.PathLike, model: FaceNet, *, meta: Mapping[str, Any]) -> None:
    """Save a (pruned) :class:`FaceNet` atomically as tensors and plain types.

    The file holds ``{"arch", "num_classes", "config", "state_dict", "layout", "meta"}``;
    ``config`` is the builder's keyword arguments and ``layout`` is :func:`channel_layout`.
    """
    if not isinstance(model, FaceNet):
        raise ModelError(
            f"save_model needs a FaceNet, not {type(model).__name__}: save other networks with "
            "save_pruned(model, path)"
        )
    _check_plain(dict(meta), "meta")
    _check_plain(model.config, "model.config")
    state = pruned_state(model)
    save_torch(
        path,
        {
            "arch": model.arch,
            "num_classes": model.num_classes,
            "config": dict(model.config),
            "state_dict": state["state_dict"],
            "layout": state["layout"],
            "meta": dict(meta),
        },
    )


def load_model(path: str | os.PathLike) -> tuple[FaceNet, dict[str, Any]]:
    """Load a :func:`save_model` file: ``(model in eval mode, meta)``.

    Builds the unpruned architecture, reshapes its layers to the saved layout (a depthwise conv
    stays depthwise) and loads the state dict strictly. The file is read with
    ``torch.load(weights_only=True)``, so loading never runs code from it. A truncated or corrupt
    file raises :class:`~facepruning.errors.ArtifactError`.
    """
    ckpt = _read(path, "save_model")
    missing = {"arch", "num_classes", "state_dict", "layout"} - set(ckpt)
    if missing:
        raise ModelError(f"{path} is not a save_model() file: it lacks {sorted(missing)}")
    model = build_model(ckpt["arch"], num_classes=ckpt["num_classes"], **ckpt.get("config", {}))
    apply_pruned_state(model, ckpt, source=str(path))
    return model.eval(), dict(ckpt.get("meta", {}))
