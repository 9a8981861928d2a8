"""Section 1: inference of pruned vs unpruned networks on the CPU, PyTorch eager and ONNX Runtime.

For every (architecture, input size) the original and the pruned network run in six ways, all
timed interleaved per batch size:

- ``eager``: ``torch.inference_mode()``, eval, contiguous (NCHW) weights and input;
- ``eager_cl``: the same in channels_last (NHWC), the layout the training code uses;
- ``fused``: BatchNorm folded into the preceding convolution (``torch.fx.experimental.
  optimization.fuse``, eval only), contiguous;
- ``fused_cl``: folded and channels_last;
- ``ort_basic`` / ``ort_all``: the network exported to ONNX (TorchScript exporter, dynamic batch)
  in ONNX Runtime's CPU provider with graph optimisation level BASIC or ALL (ALL adds the
  NCHWc layout transformer and more fusions; BASIC already folds BatchNorm into Conv).

Latency is the median per-call time at batch 1; throughput is images/s at the larger batches.
The realised speedup (original time / pruned time) sits next to the theoretical one
(original MACs / pruned MACs) and the parameter ratio.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from common import Settings, model_pair
from timing import compare
from torch import nn

IMPLS = ("eager", "eager_cl", "fused", "fused_cl", "ort_basic", "ort_all")

FULL = [
    ("squeezenet", 64, (1, 32, 64)),
    ("squeezenet", 113, (1, 32, 64)),
    ("mobilenet_v2", 64, (1, 32, 64)),
    ("resnet50", 64, (1, 32)),
]
QUICK = [("squeezenet", 64, (1, 8))]


def fuse_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval) with every Conv2d + BatchNorm2d pair folded into one conv."""
    from torch.fx.experimental.optimization import fuse

    return fuse(copy.deepcopy(model).eval(), inplace=True)


def export_onnx(model: nn.Module, image_size: int) -> bytes:
    """ONNX bytes of ``model`` (eval) with a dynamic batch dimension.

    The TorchScript exporter (``dynamo=False``) needs nothing beyond ``onnx``; the default
    torch.export-based exporter of torch >= 2.9 would also need ``onnxscript``.
    """
    f = io.BytesIO()
    x = torch.randn(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            f,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
        )
    return f.getvalue()


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
    onnx_bytes = export_onnx(model, image_size)
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
                return sess.run(None, {"input": arr})[0]

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


def run(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    configs = QUICK if settings.quick else FULL
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as tmp:
        for arch, size, batches in configs:
            print(f"[bench]   {arch} {size}x{size}, batches {batches}", flush=True)
            original, pruned, info = model_pair(arch, size)
            runners = {
                "original": _runners(original, size, settings.threads, Path(tmp)),
                "pruned": _runners(pruned, size, settings.threads, Path(tmp)),
            }
            entry: dict[str, Any] = {"arch": arch, "image_size": size, **info}
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
                g = torch.Generator().manual_seed(batch)
                x = torch.randn(batch, 3, size, size, generator=g)
                variants = {
                    f"{which}/{impl}": runners[which]["makers"][impl](x)
                    for impl in IMPLS
                    for which in ("original", "pruned")
                }
                stats = compare(
                    variants,
                    repeats=settings.repeats,
                    warmup=settings.warmup,
                    min_sample_s=settings.min_sample_s,
                )
                per_impl = {}
                for impl in IMPLS:
                    o, p = stats[f"original/{impl}"], stats[f"pruned/{impl}"]
                    per_impl[impl] = {
                        "original": o.to_dict(),
                        "pruned": p.to_dict(),
                        "original_images_per_s": batch / o.median,
                        "pruned_images_per_s": batch / p.median,
                        "speedup": o.median / p.median,
                        "speedup_vs_theory": (o.median / p.median) / info["theoretical_speedup"],
                    }
                best_o = min(IMPLS, key=lambda i: stats[f"original/{i}"].median)
                best_p = min(IMPLS, key=lambda i: stats[f"pruned/{i}"].median)
                entry["batches"][str(batch)] = {
                    "impls": per_impl,
                    "best_original": best_o,
                    "best_pruned": best_p,
                    "best_speedup": stats[f"original/{best_o}"].median
                    / stats[f"pruned/{best_p}"].median,
                }
            results.append(entry)
            del runners, original, pruned
    return {"configs": results, "impls": list(IMPLS)}
