"""results.json -> results.md: the tables a reader looks at."""

from __future__ import annotations

from typing import Any

IMPL_NAMES = {
    "eager": "eager NCHW",
    "eager_cl": "eager channels_last",
    "fused": "eager BN-fused NCHW",
    "fused_cl": "eager BN-fused channels_last",
    "ort_basic": "ORT BASIC",
    "ort_all": "ORT ALL",
}


def _f(x: Any, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def _machine(r: dict[str, Any]) -> list[str]:
    m, s = r["machine"], r["settings"]
    v = m["versions"]
    lines = [
        "# Benchmarks",
        "",
        f"- CPU: {m['cpu']} ({m['logical_cpus']} logical CPUs, {m['usable_cpus']} usable; "
        f"ISA: {', '.join(m['isa']) or 'n/a'}); memory {m['memory_gib']} GiB",
        f"- torch {v['torch']} ({s['threads']} intra-op threads, "
        f"{m['torch_interop_threads']} inter-op), torchvision {v['torchvision']}, "
        f"torch-pruning {v['torch_pruning']}, onnx {v['onnx']}, onnxruntime {v['onnxruntime']}, "
        f"Python {v['python']}",
        f"- load average at start {m.get('load_average_start')}, at end "
        f"{m.get('load_average_end')} (a load above the core count means a shared machine: "
        "the numbers are noisy)",
        f"- mode: {'quick' if s['quick'] else 'full'}; {s['repeats']} interleaved repeats, "
        f"{s['warmup']} warm-up; medians, spread = IQR/median; total {r['elapsed_s']:.0f} s",
        "",
    ]
    return lines


def _inference(sec: dict[str, Any]) -> list[str]:
    out = ["## 1. Inference: pruned vs unpruned", ""]
    for c in sec["configs"]:
        ort_diff = max(c["onnx"]["max_abs_diff"][k]["ort_all"] for k in ("original", "pruned"))
        src = c["source"]
        if src == "synthetic":
            src = f"synthetic pruning ({c['method']}; no trained models in models/)"
        out.append(
            f"**{c['arch']} {c['image_size']}x{c['image_size']}** ({src}): MACs "
            f"{c['macs'] / 1e6:.1f}M -> {c['macs_pruned'] / 1e6:.1f}M (ratio "
            f"{c['mac_ratio']:.3f}, theoretical speedup {c['theoretical_speedup']:.2f}x), "
            f"parameters {c['params'] / 1e6:.2f}M -> {c['params_pruned'] / 1e6:.2f}M (ratio "
            f"{c['param_ratio']:.3f}); max |ONNX - eager| "
            f"{ort_diff:.2e}"
            f" (output scale {c['onnx']['output_scale']['original']:.2g}), max over every "
            f"variant {c['max_abs_diff_vs_eager']:.2e}"
        )
        out.append("")
        rows = []
        for batch, b in c["batches"].items():
            for impl, v in b["impls"].items():
                if batch == "1":
                    orig = f"{v['original']['median'] * 1e3:.2f} ms"
                    prun = f"{v['pruned']['median'] * 1e3:.2f} ms"
                else:
                    orig = f"{v['original_images_per_s']:.0f} img/s"
                    prun = f"{v['pruned_images_per_s']:.0f} img/s"
                spread = max(v["original"]["spread"] or 0, v["pruned"]["spread"] or 0)
                rows.append(
                    [
                        batch,
                        IMPL_NAMES[impl],
                        orig,
                        prun,
                        f"{v['speedup']:.2f}x",
                        f"{v['speedup_vs_theory']:.0%}",
                        f"{spread:.0%}",
                    ]
                )
            rows.append(
                [
                    batch,
                    "**best vs best**",
                    IMPL_NAMES[b["best_original"]],
                    IMPL_NAMES[b["best_pruned"]],
                    f"**{b['best_speedup']:.2f}x**",
                    f"{b['best_speedup'] / c['theoretical_speedup']:.0%}",
                    "",
                ]
            )
        out += _table(
            [
                "batch",
                "runtime",
                "original",
                "pruned",
                "speedup",
                "of MAC theory",
                "spread",
            ],
            rows,
        )
    return out


def _training(sec: dict[str, Any]) -> list[str]:
    out = [
        "## 2. Our training step vs a bare PyTorch loop",
        "",
        f"batch {sec['batch_size']}, {sec['batches_per_sample']} batches per sample; "
        "target: train_epoch overhead < 5%",
        "",
    ]
    rows = []
    for arch, a in sec["archs"].items():
        p = a["per_step_s"]
        rows.append(
            [
                arch,
                f"{p['bare'] * 1e3:.1f}",
                f"{p['train_epoch'] * 1e3:.1f}",
                f"{a['overhead']:+.1%}",
                f"{p['train_epoch_loader'] * 1e3:.1f}",
                f"{a['overhead_with_loader']:+.1%}",
                "met" if a["met"] else "missed",
            ]
        )
    return out + _table(
        [
            "arch",
            "bare ms/step",
            "train_epoch ms/step",
            "overhead",
            "+ make_loader ms/step",
            "overhead",
            "< 5%",
        ],
        rows,
    )


def _scoring(sec: dict[str, Any]) -> list[str]:
    out = [
        "## 3. Taylor scoring mini-batch vs plain training step",
        "",
        f"batch {sec['batch_size']}; target: taylor_activation < 1.25x a plain step",
        "",
    ]
    rows = []
    for arch, a in sec["archs"].items():
        p = a["per_step_s"]
        rows.append(
            [
                arch,
                f"{p['plain'] * 1e3:.1f}",
                f"{p['taylor_activation'] * 1e3:.1f}",
                f"{a['ratio']:.3f}x",
                f"{p['taylor_weight'] * 1e3:.1f}",
                f"{a['ratio_taylor_weight']:.3f}x",
                "met" if a["met"] else "missed",
            ]
        )
    out += _table(
        [
            "arch",
            "plain ms/step",
            "taylor_activation ms/step",
            "ratio",
            "taylor_weight ms/step",
            "ratio",
            "< 1.25x",
        ],
        rows,
    )
    m = sec["memory"]
    out += [
        f"Memory while taylor_activation scores accumulate ({m['arch']}, batch "
        f"{m['batch_size']}, fresh process each):",
        "",
    ]
    out += _table(
        ["run", "peak RSS MiB", "RSS growth after batch 5, KiB/batch", "Python heap peak MiB"],
        [
            [
                name,
                f"{r['max_rss_bytes'] / 2**20:.1f}",
                _f(
                    None
                    if r["rss_slope_bytes_per_batch"] is None
                    else r["rss_slope_bytes_per_batch"] / 1024,
                    ".1f",
                ),
                f"{r['tracemalloc_peak'] / 2**20:.2f}",
            ]
            for name, r in m["runs"].items()
        ],
    )
    out += [
        f"Peak RSS {m['few']} vs {m['many']} batches: {m['peak_rss_mib_few']:.1f} vs "
        f"{m['peak_rss_mib_many']:.1f} MiB ({m['peak_growth_mib']:+.1f} MiB): "
        f"{'flat' if m['flat'] else 'NOT flat'} (criterion: < 5% growth).",
        "",
    ]
    return out


def _surgery(sec: dict[str, Any]) -> list[str]:
    out = [
        "## 4. Channel removal per pruning step",
        "",
        f"one step = {sec['step_fraction']:.0%} of the prunable channels (params.yaml), L1 scores",
        "",
    ]
    rows = [
        [
            arch,
            str(a["groups"]),
            str(a["channels_removed"]),
            f"{a['median_s']['groups']:.3f}",
            f"{a['median_s']['select'] * 1e3:.1f} ms",
            f"{a['median_s']['remove']:.3f}",
            f"{a['median_s']['total']:.3f}",
        ]
        for arch, a in sec["archs"].items()
    ]
    return out + _table(
        [
            "arch",
            "groups",
            "channels removed",
            "prunable_groups s",
            "L1 score + select",
            "remove_channels s",
            "total s",
        ],
        rows,
    )


def _data(sec: dict[str, Any]) -> list[str]:
    out = [
        "## 5. Data path",
        "",
        f"{sec['source']}: {sec['train_images']} training images {sec['image_shape']} "
        f"cropped to {sec['crop']}, batch {sec['batch_size']}, one epoch per sample",
        "",
    ]
    rows = [
        [k, f"{v:.0f}", f"{sec['stats'][k]['spread']:.0%}"] for k, v in sec["images_per_s"].items()
    ]
    out += _table(["path", "images/s", "spread"], rows)
    out += [f"In-memory cache vs decoding each epoch: {sec['cache_vs_decode']:.1f}x.", ""]
    return out


def _pipeline(sec: dict[str, Any]) -> list[str]:
    out = ["## 6. Pipeline stages (whole processes)", "", sec["note"] + ".", ""]
    rows = []
    for name, s in sec["stages"].items():
        if not s["ok"]:
            rows.append([name, "failed", "", "", "", " ".join(s["error"] or [])[:120]])
            continue
        rows.append(
            [
                name,
                f"{s['wall_s']:.1f}",
                f"{s['cpu_s']:.1f}",
                f"{s['max_rss_mib']:.0f}",
                f"{s['tree_peak_rss_mib']:.0f}",
                _f(s.get("papermill_duration_s"), ".1f"),
            ]
        )
    out += _table(
        [
            "stage",
            "wall s",
            "CPU s",
            "max RSS MiB (one process)",
            "tree peak MiB",
            "papermill s",
        ],
        rows,
    )
    if sec["reports"]:
        out += ["Full-size runs found in reports/ (papermill duration):", ""]
        out += _table(
            ["notebook", "s"],
            [[k, _f(v["papermill_duration_s"], ".0f")] for k, v in sec["reports"].items()],
        )
    return out


RENDER = {
    "inference": _inference,
    "training": _training,
    "scoring": _scoring,
    "surgery": _surgery,
    "data": _data,
    "pipeline": _pipeline,
}


def markdown(results: dict[str, Any]) -> str:
    lines = _machine(results)
    for name, sec in results["sections"].items():
        if "error" in sec:
            lines += [f"## {name}", "", f"FAILED: {sec['error']}", ""]
            continue
        lines += RENDER[name](sec)
        lines += [f"_{name}: {sec['elapsed_s']:.0f} s_", ""]
    return "\n".join(lines)
