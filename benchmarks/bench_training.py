"""Sections 2 and 3: what our training step and our Taylor scoring cost over bare PyTorch.

``training`` (section 2): ``facepruning.training.train_epoch`` over N batches against a minimal
hand-written loop (transform, forward, cross-entropy, backward, SGD step) on identical copies of
the same model, the same uint8 batches and the same ``BatchTransform``; target: overhead < 5%.
A third variant feeds ``train_epoch`` from ``make_loader`` over a dataset (per-item indexing and
collation, as ``train_identification`` does) to show what the DataLoader adds.

``scoring`` (section 3): one Taylor scoring mini-batch (``train_epoch`` inside
``ImportanceAccumulator(importance="taylor_activation")`` with ``after_backward``, SGD updates in
between as in the pruning loop) against one plain training step; target < 1.25x.
``taylor_weight`` is timed too for reference. Then memory while scores accumulate: fresh
subprocesses score 5 and 40 mini-batches (a plain 40-batch run is the control) and report
their peak RSS (``VmHWM``), the RSS after every batch and the Python heap (tracemalloc).
"""

from __future__ import annotations

import copy
import json
import resource
import subprocess
import sys
import tracemalloc
from typing import Any

import torch
from common import NUM_CLASSES, Settings, current_rss_bytes, model_kwargs
from timing import compare
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from facepruning.data import BatchTransform
from facepruning.models import build_model
from facepruning.pruning.scoring import ImportanceAccumulator
from facepruning.pruning.surgery import prunable_groups
from facepruning.training import make_loader, train_epoch

FULL = {"archs": ("squeezenet", "mobilenet_v2", "resnet50"), "resize": 73, "image_size": 64}
QUICK = {"archs": ("squeezenet",), "resize": 36, "image_size": 32}


class _Images(Dataset):
    """uint8 grayscale faces (like ORL) with labels, as ``(image, label, index)`` items."""

    def __init__(self, n: int, resize: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randint(0, 256, (n, 1, resize, resize), generator=g, dtype=torch.uint8)
        self.labels = torch.randint(0, NUM_CLASSES, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i]), i


def _setup(arch: str, cfg: dict[str, Any], batch_size: int, n_batches: int):
    torch.manual_seed(0)
    model = build_model(arch, num_classes=NUM_CLASSES, **model_kwargs(arch))
    model.to(memory_format=torch.channels_last)  # as train_identification does
    data = _Images(batch_size * n_batches, cfg["resize"])
    batches = [
        (data.images[i : i + batch_size], data.labels[i : i + batch_size], None)
        for i in range(0, len(data), batch_size)
    ]
    transform = BatchTransform(image_size=cfg["image_size"], mean=127.5, std=64.0, train=True)
    return model, data, batches, transform


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)


def bare_loop(model, optimizer, batches, transform) -> None:
    """The minimal loop our train_epoch is compared with."""
    model.train()
    g = torch.Generator().manual_seed(1)
    for images, labels, _ in batches:
        x = transform(images, g)  # channels_last float, as in train_epoch
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()


def _ours(model, optimizer, batches, transform, **kw) -> None:
    train_epoch(
        model,
        batches,
        optimizer,
        transform,
        generator=torch.Generator().manual_seed(1),
        channels_last=True,
        **kw,
    )


def _counts(settings: Settings) -> tuple[int, int, int]:
    """(batch size, batches per sample, repeats)."""
    return (8, 2, 3) if settings.quick else (32, 4, 4)


def _training_variants(model, data, batches, transform, batch_size):
    """bare loop, train_epoch, train_epoch over make_loader: each on its own copy of model."""
    models = {k: copy.deepcopy(model) for k in ("bare", "train_epoch", "train_epoch_loader")}
    opts = {k: _sgd(m) for k, m in models.items()}

    def bare():
        bare_loop(models["bare"], opts["bare"], batches, transform)

    def ours():
        _ours(models["train_epoch"], opts["train_epoch"], batches, transform)

    def ours_loader():
        g = torch.Generator()
        loader = make_loader(data, batch_size=batch_size, shuffle=True, generator=g)
        _ours(models["train_epoch_loader"], opts["train_epoch_loader"], loader, transform)

    return {"bare": bare, "train_epoch": ours, "train_epoch_loader": ours_loader}


def _scoring_variants(model, groups, batches, transform):
    """plain train_epoch and train_epoch inside an ImportanceAccumulator, on copies of model."""

    def make(criterion):
        m = copy.deepcopy(model)
        opt = _sgd(m)
        if criterion == "plain":
            return lambda: _ours(m, opt, batches, transform)

        def fn():
            with ImportanceAccumulator(m, groups, importance=criterion) as acc:
                _ours(m, opt, batches, transform, after_backward=acc.after_backward)
            return acc.scores()

        return fn

    return {c: make(c) for c in ("plain", "taylor_activation", "taylor_weight")}


def run_training(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    cfg = QUICK if settings.quick else FULL
    batch_size, n_batches, repeats = _counts(settings)
    out = {"batch_size": batch_size, "batches_per_sample": n_batches, "archs": {}}
    for arch in cfg["archs"]:
        model, data, batches, transform = _setup(arch, cfg, batch_size, n_batches)
        variants = _training_variants(model, data, batches, transform, batch_size)
        stats = compare(variants, repeats=repeats, warmup=1, min_sample_s=0.0)
        bare = stats["bare"].median
        out["archs"][arch] = {
            "per_step_s": {k: s.median / n_batches for k, s in stats.items()},
            "stats": {k: s.to_dict() for k, s in stats.items()},
            "overhead": stats["train_epoch"].median / bare - 1,
            "overhead_with_loader": stats["train_epoch_loader"].median / bare - 1,
            "target": 0.05,
            "met": stats["train_epoch"].median / bare - 1 < 0.05,
        }
    return out


def run_scoring(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    cfg = QUICK if settings.quick else FULL
    batch_size, n_batches, repeats = _counts(settings)
    out: dict[str, Any] = {"batch_size": batch_size, "batches_per_sample": n_batches, "archs": {}}
    for arch in cfg["archs"]:
        model, _, batches, transform = _setup(arch, cfg, batch_size, n_batches)
        groups = prunable_groups(model)
        variants = _scoring_variants(model, groups, batches, transform)
        stats = compare(variants, repeats=repeats, warmup=1, min_sample_s=0.0)
        plain = stats["plain"].median
        ratio = stats["taylor_activation"].median / plain
        out["archs"][arch] = {
            "per_step_s": {k: s.median / n_batches for k, s in stats.items()},
            "stats": {k: s.to_dict() for k, s in stats.items()},
            "ratio": ratio,
            "ratio_taylor_weight": stats["taylor_weight"].median / plain,
            "target": 1.25,
            "met": ratio < 1.25,
        }
    out["memory"] = _memory(settings, cfg)
    return out


# -- memory while scores accumulate (fresh processes) --------------------------------------------
def _memory(settings: Settings, cfg: dict[str, Any]) -> dict[str, Any]:
    few, many = (2, 8) if settings.quick else (5, 40)
    batch_size = 8 if settings.quick else 32
    arch = "squeezenet"
    runs = {}
    plan = [("taylor_activation", few), ("taylor_activation", many), ("plain", many)]
    for mode, n in plan if not settings.quick else plan[:2]:
        spec = {
            "arch": arch,
            "mode": mode,
            "batches": n,
            "batch_size": batch_size,
            "threads": settings.threads,
            **{k: cfg[k] for k in ("resize", "image_size")},
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", json.dumps(spec)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[f"{mode}_{n}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = runs[f"taylor_activation_{few}"], runs[f"taylor_activation_{many}"]
    c = runs.get(f"plain_{many}", {"max_rss_bytes": float("nan")})
    mib = 2**20
    return {
        "arch": arch,
        "batch_size": batch_size,
        "few": few,
        "many": many,
        "runs": runs,
        "peak_rss_mib_few": a["max_rss_bytes"] / mib,
        "peak_rss_mib_many": b["max_rss_bytes"] / mib,
        "peak_rss_mib_plain_many": c["max_rss_bytes"] / mib,
        "peak_growth_mib": (b["max_rss_bytes"] - a["max_rss_bytes"]) / mib,
        "rss_growth_mib_per_batch_after_5": (b["rss_slope_bytes_per_batch"] or 0.0) / mib,
        "python_heap_peak_mib": {
            "few": a["tracemalloc_peak"] / mib,
            "many": b["tracemalloc_peak"] / mib,
        },
        "flat": (b["max_rss_bytes"] - a["max_rss_bytes"]) / max(a["max_rss_bytes"], 1) < 0.05,
    }


class _Recorder:
    """Stands in for train_epoch's progress bar: records RSS after every mini-batch."""

    def __init__(self) -> None:
        self.rss: list[int] = []

    def update(self, _n: int) -> None:
        self.rss.append(current_rss_bytes())

    def set_postfix(self, **_kw) -> None:
        pass


def _slope(values: list[int], start: int) -> float:
    ys = values[start:]
    if len(ys) < 2:
        return 0.0
    xs = list(range(len(ys)))
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _vm_hwm_bytes() -> int:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries the parent's
    high-water mark over fork + exec, so a child of a large process would report the parent's."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(spec["threads"])
    n, bs = spec["batches"], spec["batch_size"]
    model, _, _, transform = _setup(spec["arch"], spec, bs, 1)
    data = _Images(bs * n, spec["resize"], seed=1)
    batches = [
        (data.images[i : i + bs], data.labels[i : i + bs], None) for i in range(0, len(data), bs)
    ]
    groups = prunable_groups(model)
    opt = _sgd(model)
    rec = _Recorder()
    tracemalloc.start()
    if spec["mode"] == "plain":
        _ours(model, opt, batches, transform, progress=rec)
    else:
        with ImportanceAccumulator(model, groups, importance=spec["mode"]) as acc:
            _ours(model, opt, batches, transform, after_backward=acc.after_backward, progress=rec)
        acc.scores()
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "max_rss_bytes": _vm_hwm_bytes(),
        "rss_after_batch": rec.rss,
        # growth per batch once the allocator has settled (None for runs too short to tell)
        "rss_slope_bytes_per_batch": _slope(rec.rss, 5) if len(rec.rss) > 6 else None,
        "tracemalloc_peak": py_peak,
    }


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
    print(json.dumps(_memory_child(json.loads(sys.argv[2]))))
