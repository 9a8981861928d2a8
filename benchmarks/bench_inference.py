"""Section 1: is the pruned network faster? Pruned vs unpruned on the CPU, for channel multiples.

For every (architecture, input size) the original network and pruned copies at equal depth run in
three ways, all timed interleaved per batch size:

- ``fused_cl``: PyTorch eager, ``torch.inference_mode()``, BatchNorm folded into the preceding
  convolution (``torch.fx.experimental.optimization.fuse``) and channels_last (NHWC);
- ``ort_basic`` / ``ort_all``: the network exported to ONNX (TorchScript exporter, dynamic batch)
  in ONNX Runtime's CPU provider with graph optimisation level BASIC or ALL (ALL adds the
  NCHWc layout transformer and more fusions; BASIC already folds BatchNorm into Conv).

The pruned copies (:func:`common.aligned_variants`) have the layout of the pipeline's Taylor-pruned
network (``channel_multiple`` 1) and that layout rounded so every group keeps a multiple of 8 or
16 channels, as ``channel_multiple`` does at every pruning step. Each is compared with the
original: the realised speed-up (original time / pruned time) against the theoretical one
(original MACs / pruned MACs), per runtime and best against best. ``summary`` holds one row per
(network, batch, runtime, multiple); ``default_channel_multiple`` is the multiple this machine
favours (:func:`choose_multiple`).
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import Settings, aligned_variants, figures, model_pair, reference_layout
from timing import compare
from torch import nn

from facepruning import export

IMPLS = ("fused_cl", "ort_basic", "ort_all")
MULTIPLES = (1, 8, 16)
QUICK_MULTIPLES = (1, 8)
#: interleaved samples per variant: enough for spreads (IQR/median) of a few percent
REPEATS = 12
#: a default multiple must beat the next smaller one by this much (worst-case realised/theory)
MARGIN = 0.03

FULL = [
    ("squeezenet", 64, (1, 32)),
    ("squeezenet", 113, (1, 32)),
    ("mobilenet_v2", 64, (1, 32)),
    ("resnet50", 64, (1, 32)),
]
QUICK = [("squeezenet", 64, (1, 8))]


def _variant(m: int) -> str:
    return f"m{m}"


def fuse_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with every Conv2d + BatchNorm2d pair folded into one conv."""
    from torch.fx.experimental.optimization import fuse

    return fuse(copy.deepcopy(model).eval(), inplace=True)


def ort_session(onnx_bytes: bytes, level: str, threads: int, cache_dir: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    path = cache_dir / f"model_{id(onnx_bytes)}.onnx"
    path.write_bytes(onnx_bytes)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _runners(model: nn.Module, image_size: int, threads: int, tmp: Path) -> dict[str, Any]:
    """One callable factory per implementation: ``make(x) -> fn()`` plus correctness checks."""
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    fused = fuse_bn(model)
    fused_cl = copy.deepcopy(fused).to(memory_format=torch.channels_last)
    onnx_bytes = export.onnx_bytes(model.eval(), image_size)
    sessions = {lvl: ort_session(onnx_bytes, lvl, threads, tmp) for lvl in ("basic", "all")}

    def eager(m, channels_last):
        def make(x):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)

            def run():
                with torch.inference_mode():
                    return m(x)

            return run

        return make

    def onnx(sess):
        def make(x):
            arr = x.numpy()

            def run():
                return sess.run(None, {export.INPUT_NAME: arr})[0]

            return run

        return make

    makers = {
        "eager": eager(model, False),
        "eager_cl": eager(cl, True),
        "fused": eager(fused, False),
        "fused_cl": eager(fused_cl, True),
        "ort_basic": onnx(sessions["basic"]),
        "ort_all": onnx(sessions["all"]),
    }
    # Correctness: every implementation against plain eager on one seeded batch.
    x = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    ref = makers["eager"](x)()
    scale = float(ref.abs().max())
    diffs = {}
    for name, make in makers.items():
        out = torch.as_tensor(make(x)())
        diffs[name] = float((out - ref).abs().max())
    return {
        "makers": makers,
        "max_abs_diff": diffs,
        "output_scale": scale,
        "onnx_bytes": len(onnx_bytes),
    }


def _timed(runners: dict[str, Any], size: int, batch: int, settings: Settings) -> dict[str, Any]:
    """Every (model, runtime) at one batch size, interleaved: ``{model: {impl: Stats}}``."""
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, size, size, generator=g)
    variants = {
        f"{which}/{impl}": runners[which]["makers"][impl](x) for impl in IMPLS for which in runners
    }
    repeats = settings.repeats if settings.quick else max(settings.repeats, REPEATS)
    stats = compare(
        variants, repeats=repeats, warmup=settings.warmup, min_sample_s=settings.min_sample_s
    )
    return {which: {impl: stats[f"{which}/{impl}"] for impl in IMPLS} for which in runners}


def _rows(entry: dict[str, Any], batch: int, stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Summary rows of one (network, batch): every runtime and best vs best, per multiple."""
    rows = []
    original = stats["original"]
    best_o = min(IMPLS, key=lambda i: original[i].median)
    for m, info in entry["variants"].items():
        pruned = stats[_variant(int(m))]
        best_p = min(IMPLS, key=lambda i: pruned[i].median)
        pairs = [(impl, impl, impl) for impl in IMPLS] + [("best", best_o, best_p)]
        for runtime, impl_o, impl_p in pairs:
            speedup = original[impl_o].median / pruned[impl_p].median
            rows.append(
                {
                    "arch": entry["arch"],
                    "image_size": entry["image_size"],
                    "batch": batch,
                    "runtime": runtime,
                    "runtimes": f"{impl_o} vs {impl_p}",
                    "channel_multiple": int(m),
                    "macs_ratio": info["mac_ratio"],
                    "speedup": speedup,
                    "realised_over_theory": speedup / info["theoretical_speedup"],
                    "spread": max(original[impl_o].spread, pruned[impl_p].spread),
                }
            )
    return rows


def choose_multiple(summary: list[dict[str, Any]]) -> int:
    """The multiple the targets favour. First the multiples whose pruned network is never slower
    than the original in any runtime and batch (all multiples when none is); among them, the one
    with the best worst case, over networks and batch sizes, of the best pruned runtime's
    speed-up against the best original runtime as a share of the MAC theory. A larger multiple
    must beat a smaller one by :data:`MARGIN`: rounding removes a few more channels than the
    ranking asks for, which costs accuracy for nothing if it buys no speed."""
    best = [r for r in summary if r["runtime"] == "best"]
    worst, slowest = {}, {}
    for r in best:
        m = r["channel_multiple"]
        worst[m] = min(worst.get(m, math.inf), r["realised_over_theory"])
    for r in summary:
        if r["runtime"] != "best":
            m = r["channel_multiple"]
            slowest[m] = min(slowest.get(m, math.inf), r["speedup"])
    candidates = [m for m in sorted(worst) if slowest.get(m, 0) >= 1] or sorted(worst)
    choice = candidates[0]
    for m in candidates:
        if worst[m] > worst[choice] + MARGIN:
            choice = m
    return choice


def run(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    configs = QUICK if settings.quick else FULL
    multiples = QUICK_MULTIPLES if settings.quick else MULTIPLES
    results, summary = [], []
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        for arch, size, batches in configs:
            print(f"[bench]   {arch} {size}x{size}, batches {batches}", flush=True)
            original, pruned, info = model_pair(arch, size)
            models = {"original": original}
            kept, source = reference_layout(arch, pruned)
            aligned = aligned_variants(original, kept, multiples)
            models |= {_variant(m): v for m, v in aligned.items()}
            runners = {k: _runners(v, size, settings.threads, Path(tmp)) for k, v in models.items()}
            entry: dict[str, Any] = {"arch": arch, "image_size": size, **info}
            entry["layout_source"] = source
            entry["variants"] = {
                str(m): figures(original, models[_variant(m)], size) for m in multiples
            }
            entry["onnx"] = {
                "exporter": "torch.onnx.export(dynamo=False), opset 17",
                "max_abs_diff": {k: r["max_abs_diff"] for k, r in runners.items()},
                "output_scale": {k: r["output_scale"] for k, r in runners.items()},
                "size_bytes": {k: r["onnx_bytes"] for k, r in runners.items()},
            }
            entry["max_abs_diff_vs_eager"] = max(
                d for r in runners.values() for d in r["max_abs_diff"].values()
            )
            entry["batches"] = {}
            for batch in batches:
                stats = _timed(runners, size, batch, settings)
                entry["batches"][str(batch)] = {
                    which: {impl: s.to_dict() for impl, s in per.items()}
                    for which, per in stats.items()
                }
                summary += _rows(entry, batch, stats)
            results.append(entry)
            del runners, models, original, pruned
    return {
        "configs": results,
        "impls": list(IMPLS),
        "multiples": list(multiples),
        "summary": summary,
        "default_channel_multiple": choose_multiple(summary),
    }
