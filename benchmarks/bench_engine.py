"""Section ``engine``: our one-call engine side by side with Torch-Pruning's ``MetaPruner``.

On torchvision's ResNet18 and MobileNetV3-Small (64x64 inputs, 10 classes), 30% of the prunable
channels go, chosen globally by the L1 norm and by a first-order Taylor criterion, with every
layer kept at a multiple of 8 channels where both allow it. For each library: the lines of user
code the call takes, seconds per step (median and spread over repeats, on fresh copies),
parameters and MACs after, whether the pruned network computes what the original computes with
the same channels zeroed (the channels read from our report and from Torch-Pruning's pruning
history), and how many removed channels the two choose alike.

Why they differ where they do: Torch-Pruning ranks *groups* by a reduced importance over every
layer in the group (the consumers' input weights too) and, with ``global_pruning``, compares
groups without layer-wise normalisation; its Taylor criterion is the weight form, ``|w * dL/dw|``
summed per channel, while ours is Molchanov 2017's activation form (the papers') and normalises
each group's scores by their L2 norm before the global ranking. ``round_to`` rounds each layer's
count separately, where ours rounds each group's share after one global selection.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
import torchvision
from common import Settings
from timing import summarize

import facepruning
from facepruning.models import count_macs, count_parameters
from facepruning.pruning import prunable_groups, zero_channels

NETWORKS = ("resnet18", "mobilenet_v3_small")
AMOUNT = 0.3
ROUND_TO = 8

# the user's code for each library, as counted (lines a user writes, imports excluded)
USER_CODE = {
    "facepruning": [
        "model, report = facepruning.prune(model, x, importance=imp, amount=0.3,",
        "    batches=[(x, y)], channel_multiple=8, ignored=[model.fc])",
    ],
    "torch_pruning": [
        "pruner = tp.pruner.MetaPruner(model, x, importance=imp, pruning_ratio=0.3,",
        "    global_pruning=True, round_to=8, ignored_layers=[model.fc])",
        "F.cross_entropy(model(x), y).backward()  # Taylor only",
        "pruner.step()",
    ],
}


def _network(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(num_classes=10)
    for m in net.modules():  # statistics as a trained network has them
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return net.eval(), (net.fc if hasattr(net, "fc") else net.classifier)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 64, 64, generator=g), torch.randint(0, 10, (16,), generator=g)


def _ours(net, head, criterion, x, y) -> dict[str, set[int]]:
    batches = [(x, y)] if criterion == "taylor" else None
    importance = "taylor_activation" if criterion == "taylor" else "l1_norm"
    _, report = facepruning.prune(
        net, x[:1], importance=importance, amount=AMOUNT, batches=batches,
        channel_multiple=ROUND_TO, ignored=[head],
    )  # fmt: skip
    return {g: set(i) for g, i in report.removed.items()}


def _theirs(net, head, criterion, x, y):
    imp = (
        tp.importance.TaylorImportance()
        if criterion == "taylor"
        else tp.importance.MagnitudeImportance(p=1)
    )
    pruner = tp.pruner.MetaPruner(
        net, x[:1], importance=imp, pruning_ratio=AMOUNT, global_pruning=True,
        round_to=ROUND_TO, ignored_layers=[head],
    )  # fmt: skip
    if criterion == "taylor":
        F.cross_entropy(net(x), y).backward()
    pruner.step()
    net.zero_grad(set_to_none=True)
    return pruner


def _removed_by_history(pruner, groups) -> dict[str, set[int]]:
    """The channels each of our groups lost in Torch-Pruning's step, from its pruning history
    (which names a group by one of its convs, not always the one we name it by)."""
    owner = {conv: g.name for g in groups for conv in g.convs}
    removed: dict[str, set[int]] = {}
    for layer, out_channels, idxs in pruner.pruning_history():
        if out_channels and layer in owner:
            removed.setdefault(owner[layer], set()).update(int(i) for i in idxs)
    return removed


def _masked_equal(original, pruned, groups, removed, x) -> bool:
    plan = {g: sorted(i) for g, i in removed.items() if i}
    with torch.no_grad(), zero_channels(original, plan, groups=groups):
        expected = original(x)
    with torch.no_grad():
        got = pruned(x)
    return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-4))


def _one(name: str, criterion: str, library: str, repeats: int) -> dict[str, Any]:
    x, y = _data()
    base, _ = _network(name)
    groups = prunable_groups(base, example_input=x[:1], ignored=[_network(name)[1]])
    seconds, removed, pruned = [], {}, None
    for _ in range(repeats):
        net, head = _network(name)
        t0 = time.perf_counter()
        if library == "facepruning":
            removed = _ours(net, head, criterion, x, y)
        else:
            removed = _removed_by_history(_theirs(net, head, criterion, x, y), groups)
        seconds.append(time.perf_counter() - t0)
        pruned = net.eval()
    stats = summarize(seconds)
    return {
        "seconds": stats.median,
        "spread": stats.to_dict().get("spread"),
        "params": [count_parameters(base), count_parameters(pruned)],
        "macs": [count_macs(base, x), count_macs(pruned, x)],
        "channels_removed": sum(len(i) for i in removed.values()),
        "pruned_equals_masked": _masked_equal(base, pruned, groups, removed, x[:4]),
        "removed": {g: sorted(i) for g, i in removed.items()},
        "user_lines": len(USER_CODE[library])
        - (library == "torch_pruning" and criterion != "taylor"),
    }


def run(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    repeats = 1 if settings.quick else 3
    networks = NETWORKS[:1] if settings.quick else NETWORKS
    out: dict[str, Any] = {"amount": AMOUNT, "round_to": ROUND_TO, "code": USER_CODE, "rows": []}
    for name in networks:
        for criterion in ("l1", "taylor"):
            ours = _one(name, criterion, "facepruning", repeats)
            theirs = _one(name, criterion, "torch_pruning", repeats)
            same = sum(
                len(set(ours["removed"].get(g, [])) & set(theirs["removed"].get(g, [])))
                for g in ours["removed"]
            )
            for library, row in (("facepruning", ours), ("torch_pruning", theirs)):
                row = {k: v for k, v in row.items() if k != "removed"}
                out["rows"].append({"network": name, "criterion": criterion, "library": library,
                                    "same_channels_as_other": same, **row})  # fmt: skip
    return out
