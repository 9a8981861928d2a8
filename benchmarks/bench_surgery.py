"""Section 4: the bookkeeping of one pruning step (no training): find groups, select, remove.

Per architecture, on a fresh copy of the network each time: ``prunable_groups`` (traces the
network with torch-pruning's DependencyGraph), ``select_channels`` over L1 scores for a step of
the default pipeline's size (``filters_per_step: 0.04`` of the prunable channels, params.yaml),
and ``remove_channels`` (which traces again and rewrites the layers), plus converting the
new parameters back to channels_last as the pruning loop does.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from common import NUM_CLASSES, Settings, model_kwargs
from timing import summarize

from facepruning.models import build_model
from facepruning.pruning.loop import select_channels
from facepruning.pruning.scoring import ImportanceAccumulator
from facepruning.pruning.surgery import prunable_groups, remove_channels

STEP_FRACTION = 0.04  # params.yaml prune.filters_per_step
ARCHS = ("squeezenet", "mobilenet_v2", "resnet50")


def one_step(model: torch.nn.Module, example: torch.Tensor) -> dict[str, float]:
    t0 = time.perf_counter()
    groups = prunable_groups(model, example_input=example)
    t1 = time.perf_counter()
    with ImportanceAccumulator(model, groups, importance="l1_norm") as acc:
        scores = acc.scores()
    count = max(1, round(STEP_FRACTION * sum(g.size for g in groups)))
    plan = select_channels(scores, count=count, min_channels=1)
    t2 = time.perf_counter()
    remove_channels(model, plan, example_input=example)
    model.to(memory_format=torch.channels_last)
    t3 = time.perf_counter()
    return {"groups": t1 - t0, "select": t2 - t1, "remove": t3 - t2, "total": t3 - t0, "n": count}


def run(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    archs = ("squeezenet",) if settings.quick else ARCHS
    repeats = 2 if settings.quick else 3
    out: dict[str, Any] = {"step_fraction": STEP_FRACTION, "archs": {}}
    for arch in archs:
        torch.manual_seed(0)
        base = build_model(arch, num_classes=NUM_CLASSES, **model_kwargs(arch))
        base.to(memory_format=torch.channels_last)
        example = torch.zeros(1, 3, 64, 64)
        n_groups = len(prunable_groups(base, example_input=example))  # also warms up tracing
        runs = [one_step(copy.deepcopy(base), example) for _ in range(repeats)]
        keys = ("groups", "select", "remove", "total")
        stats = {k: summarize([r[k] for r in runs]) for k in keys}
        out["archs"][arch] = {
            "groups": n_groups,
            "channels_removed": runs[0]["n"],
            "median_s": {k: s.median for k, s in stats.items()},
            "stats": {k: s.to_dict() for k, s in stats.items()},
        }
    return out
