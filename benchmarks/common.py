"""What the benchmark sections share: settings, machine description, and the model pairs.

A *model pair* is an unpruned network and a pruned copy of it. When the pipeline's outputs exist
(``models/<arch>/baseline.pt`` and ``models/pruned/<arch>-taylor_activation.pt``, DVC outputs)
they are used as they are. Otherwise a fresh network is pruned synthetically: in every prunable
channel group the ``SYNTHETIC_FRACTION`` of channels with the lowest L1 norm go
(``ImportanceAccumulator(importance="l1_norm")`` + ``select_channels`` per group +
``remove_channels``). Per-group rather than global ranking, because global L1 ranking on a
randomly initialised network mostly empties the layers with the smallest fan-in, which says
nothing about a trained pruned network. Before timing, the BatchNorm statistics of synthetic
networks are set from a few random batches, so activations have realistic magnitudes (no
denormals, meaningful ONNX comparisons).
"""

from __future__ import annotations

import copy
import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facepruning.models import build_model, count_macs, count_parameters, load_model
from facepruning.pruning.loop import select_channels
from facepruning.pruning.scoring import ImportanceAccumulator
from facepruning.pruning.surgery import prunable_groups, remove_channels
from facepruning.training import recalibrate_batchnorm

ROOT = Path(__file__).resolve().parent.parent
NUM_CLASSES = 30
SYNTHETIC_FRACTION = 0.4


@dataclass
class Settings:
    """How hard each section works; ``quick`` is the tiny version used by the test."""

    quick: bool = False
    repeats: int = 5
    warmup: int = 2
    min_sample_s: float = 0.1
    threads: int = field(default_factory=torch.get_num_threads)
    out_dir: Path = ROOT / "benchmarks"

    @classmethod
    def make(cls, *, quick: bool, threads: int | None, out_dir: Path) -> Settings:
        s = cls(quick=quick, out_dir=out_dir)
        if quick:
            s.repeats, s.warmup, s.min_sample_s = 3, 1, 0.01
        if threads:
            s.threads = threads
        return s


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, memory, library versions and thread settings."""
    cpu, flags = platform.processor() or "unknown", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu in ("unknown", "x86_64", ""):
                    cpu = value.strip()
                if key.strip() == "flags" and not flags:
                    flags = value
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("torchvision", "torch_pruning", "onnx", "onnxruntime", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # not installed: the sections that need it say so
            versions[name] = None
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f" {f}" in f" {flags}"]
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "memory_gib": mem_gib,
        "isa": isa,
        "platform": platform.platform(),
        "torch_threads": threads,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def calibrate_bn(model: nn.Module, image_size: int, *, batches: int = 2, batch: int = 16) -> None:
    """Set BatchNorm running statistics from random batches (cumulative average), then eval."""
    g = torch.Generator().manual_seed(0)
    noise = [
        (torch.randn(batch, 3, image_size, image_size, generator=g), torch.zeros(batch))
        for _ in range(batches)
    ]
    recalibrate_batchnorm(model, noise, lambda x, _: x, generator=g, channels_last=False)
    model.eval()


def synthetic_prune(model: nn.Module, fraction: float = SYNTHETIC_FRACTION) -> dict[str, int]:
    """Remove ``fraction`` of the channels of every prunable group by L1 norm, in place."""
    groups = prunable_groups(model)
    acc = ImportanceAccumulator(model, groups, importance="l1_norm")
    scores = acc.scores()
    plan: dict[str, list[int]] = {}
    for name, s in scores.items():
        count = int(len(s) * fraction)
        if count:
            plan.update(select_channels({name: s}, count=count, min_channels=1))
    remove_channels(model, plan)
    return {name: len(idx) for name, idx in plan.items()}


#: Channels per group of the pipeline's Taylor-pruned networks from a ``channel_multiple`` 1 run
#: (``gpu_paper_run.py --write-layouts``): the reference depth of every multiple's comparison,
#: kept fixed so that later pipeline runs with a multiple > 1 do not round the reference itself.
TAYLOR_LAYOUTS = ROOT / "benchmarks" / "taylor_layouts.json"


def reference_layout(arch: str, pruned: nn.Module) -> tuple[dict[str, int], str]:
    """``(layout, source)``: the stored Taylor layout of ``arch`` if any, else ``pruned``'s."""
    own = layout(pruned)
    if TAYLOR_LAYOUTS.is_file():
        stored = json.loads(TAYLOR_LAYOUTS.read_text(encoding="utf-8"))
        if arch in stored and set(stored[arch]) == set(own):
            return stored[arch], TAYLOR_LAYOUTS.name
    return own, "the pruned model"


def layout(model: nn.Module) -> dict[str, int]:
    """Channels per prunable group, ``{group name: channels}``."""
    return {g.name: g.size for g in prunable_groups(model)}


def aligned_variants(
    original: nn.Module, kept: dict[str, int], multiples: tuple[int, ...]
) -> dict[int, nn.Module]:
    """Copies of ``original`` pruned to the ``kept`` layout, each group kept at a multiple of m.

    ``kept`` is the :func:`layout` of ``original`` pruned with ``channel_multiple`` 1. Its
    per-group removals become scores (within a group, by L1 norm; across groups, a channel scores
    below zero exactly when the layout removed that many of its group), so
    :func:`select_channels` with m = 1 reproduces the layout, and with m > 1 rounds it the way
    the pruning loop rounds every step: each group to a multiple of m, at least as many channels
    removed in all. Which channels of a group go does not change the timing.
    """
    groups = prunable_groups(original)
    l1 = ImportanceAccumulator(original, groups, importance="l1_norm").scores()
    scores = {}
    for g in groups:
        removed = g.size - kept[g.name]
        rank = torch.argsort(torch.argsort(l1[g.name], stable=True), stable=True).double()
        scores[g.name] = (rank - removed + 0.5) / g.size
    count = sum(g.size - kept[g.name] for g in groups)
    variants = {}
    for m in multiples:
        model = copy.deepcopy(original)
        remove_channels(model, select_channels(scores, count=count, channel_multiple=m))
        variants[m] = model.eval().to(memory_format=torch.contiguous_format)
    return variants


def model_kwargs(arch: str) -> dict[str, Any]:
    return {"first_stride": 1} if arch == "squeezenet" else {}


def trained_paths(arch: str) -> tuple[Path, Path] | None:
    base = ROOT / "models" / arch / "baseline.pt"
    pruned = ROOT / "models" / "pruned" / f"{arch}-taylor_activation.pt"
    return (base, pruned) if base.is_file() and pruned.is_file() else None


def model_pair(
    arch: str, image_size: int, *, num_classes: int = NUM_CLASSES
) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """``(original, pruned, info)``, both in eval mode and contiguous memory format."""
    paths = trained_paths(arch)
    if paths is not None:
        original, _ = load_model(paths[0])
        pruned, meta = load_model(paths[1])
        info = {"source": "trained", "baseline": str(paths[0]), "pruned": str(paths[1])}
    else:
        torch.manual_seed(0)
        original = build_model(arch, num_classes=num_classes, **model_kwargs(arch))
        calibrate_bn(original, image_size)
        pruned = copy.deepcopy(original)
        removed = synthetic_prune(pruned)
        calibrate_bn(pruned, image_size)
        info = {
            "source": "synthetic",
            "method": f"L1, {SYNTHETIC_FRACTION:.0%} of the channels of every prunable group",
            "channels_removed": sum(removed.values()),
        }
    for m in (original, pruned):
        m.eval().to(memory_format=torch.contiguous_format)
    info.update(figures(original, pruned, image_size))
    return original, pruned, info


def figures(original: nn.Module, pruned: nn.Module, image_size: int) -> dict[str, Any]:
    """MACs and parameters of both networks and what pruning removed in theory."""
    macs = [count_macs(m, image_size=image_size) for m in (original, pruned)]
    params = [count_parameters(m) for m in (original, pruned)]
    return {
        "macs": macs[0],
        "macs_pruned": macs[1],
        "params": params[0],
        "params_pruned": params[1],
        "mac_ratio": macs[1] / macs[0],
        "param_ratio": params[1] / params[0],
        "theoretical_speedup": macs[0] / macs[1],
    }


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), 0 where unavailable."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0
