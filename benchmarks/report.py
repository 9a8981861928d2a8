"""results.json -> results.md: the tables a reader looks at."""

from __future__ import annotations

from typing import Any

from facepruning.plots.style import NETWORK_LABELS as NETWORKS

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
    out = [
        "## 1. Inference: is the pruned network faster?",
        "",
        "Pruned copies at the depth of the pipeline's Taylor-pruned network, each group kept at a "
        "multiple m of channels, against the original. Speed-up = original time / pruned time "
        "in the same runtime (best: the fastest runtime of each); of theory = speed-up / "
        "(original MACs / pruned MACs); spread = the larger IQR/median of the two timings. "
        f"Default multiple chosen on this machine: **{sec['default_channel_multiple']}**.",
        "",
    ]
    for c in sec["configs"]:
        src = c["source"]
        if src == "synthetic":
            src = f"synthetic pruning ({c['method']}; no trained models in models/)"
        widths = ", ".join(
            f"m={m}: MACs x{v['mac_ratio']:.3f}, parameters x{v['param_ratio']:.3f}"
            for m, v in c["variants"].items()
        )
        out += [f"**{c['arch']} {c['image_size']}x{c['image_size']}** ({src}): {widths}", ""]
        rows = [
            [
                str(r["batch"]),
                str(r["channel_multiple"]),
                IMPL_NAMES.get(r["runtime"], f"**best** ({r['runtimes']})"),
                f"{1 / r['macs_ratio']:.2f}x",
                f"{r['speedup']:.2f}x",
                f"{r['realised_over_theory']:.0%}",
                f"{r['spread']:.0%}",
            ]
            for r in sec["summary"]
            if (r["arch"], r["image_size"]) == (c["arch"], c["image_size"])
        ]
        out += _table(
            ["batch", "m", "runtime", "MAC theory", "speed-up", "of theory", "spread"], rows
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


def _engine(sec: dict[str, Any]) -> list[str]:
    out = [
        "## 7. The engine beside Torch-Pruning",
        "",
        f"{sec['amount']:.0%} of the prunable channels of torchvision networks (64x64, 10 "
        f"classes), ranked globally, layers kept at multiples of {sec['round_to']}; `same` counts "
        "the removed channels both libraries chose; `= masked`: the pruned network equals the "
        "original with those channels zeroed; s / step: median over fresh copies (spread)",
        "",
    ]
    rows = [
        [
            r["network"],
            r["criterion"],
            r["library"],
            str(r["user_lines"]),
            f"{r['seconds']:.2f}"
            + (f" ({r['spread']:.0%})" if r.get("spread") is not None else ""),
            f"{r['params'][1] / 1e6:.2f}M of {r['params'][0] / 1e6:.2f}M",
            f"{r['macs'][1] / 1e6:.0f}M of {r['macs'][0] / 1e6:.0f}M",
            str(r["channels_removed"]),
            str(r["same_channels_as_other"]),
            "yes" if r["pruned_equals_masked"] else "NO",
        ]
        for r in sec["rows"]
    ]
    out += _table(
        ["network", "criterion", "library", "user lines", "s / step", "params after",
         "MACs after", "channels removed", "same", "= masked"],
        rows,
    )  # fmt: skip
    return out + [
        "They choose differently because Torch-Pruning ranks groups by an importance reduced "
        "over every layer of a group (consumers' input weights included) without layer-wise "
        "normalisation, and its Taylor criterion is the weight form |w dL/dw|; ours ranks by "
        "the producers' filters only (L1) or by the activation form of the papers (Molchanov "
        "2017), each group normalised by its L2 norm, then rounds each group's share to the "
        "multiple after one global selection. " + _engine_tally(sec["rows"]),
        "",
    ]


def _engine_tally(rows: list[dict[str, Any]]) -> str:
    """How often ours leaves fewer parameters / MACs than Torch-Pruning, pair by pair."""
    pairs = {}
    for r in rows:
        pairs.setdefault((r["network"], r["criterion"]), {})[r["library"]] = r
    both = [p for p in pairs.values() if len(p) == 2]
    fewer = {
        key: sum(p["facepruning"][key][1] < p["torch_pruning"][key][1] for p in both)
        for key in ("params", "macs")
    }
    return (
        f"Of the {len(both)} network and criterion pairs, ours leaves fewer parameters in "
        f"{fewer['params']} and fewer MACs in {fewer['macs']}: normalised per group, the wide "
        "late layers (many parameters, few MACs at 64x64) give up more channels."
    )


def _phases(sec: dict[str, Any]) -> list[str]:
    out = ["## 8. Where a pruning run's time goes", "", sec["note"] + ".", ""]
    names = list(next(iter(sec["runs"].values()))["seconds"])
    rows = [
        [
            arch,
            str(r["steps"]),
            f"{r['total_s']:.0f}",
            *(f"{100 * r['seconds'][n] / r['total_s']:.0f}%" for n in names),
        ]
        for arch, r in sec["runs"].items()
    ]
    out += _table(["network", "steps", "total s", *(n.replace("_", " ") for n in names)], rows)
    return out


RENDER = {
    "inference": _inference,
    "training": _training,
    "scoring": _scoring,
    "surgery": _surgery,
    "data": _data,
    "pipeline": _pipeline,
    "engine": _engine,
    "phases": _phases,
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


# --------------------------------------------------------------------------------------------
# README.md's <!-- speed:begin --> ... <!-- speed:end --> block
# --------------------------------------------------------------------------------------------
#: The targets of "is the pruned network faster?": best pruned runtime against best original
#: runtime as a share of the MAC theory, per batch size (other batch sizes have none).
TARGETS = {1: 0.7, 32: 0.8}


def _targets(summary: list[dict[str, Any]], m: int) -> list[str]:
    """One sentence per target, with the rows that miss it."""
    rows = [r for r in summary if r["channel_multiple"] == m]
    slower = [r for r in rows if r["runtime"] != "best" and r["speedup"] < 1]
    lines = []
    if slower:
        worst = min(slower, key=lambda r: r["speedup"])
        lines.append(
            f"pruned slower than the original in {len(slower)} of "
            f"{sum(r['runtime'] != 'best' for r in rows)} (network, batch, runtime) cases, "
            f"worst {worst['speedup']:.2f}× ({_where(worst)}, {IMPL_NAMES[worst['runtime']]})"
        )
    else:
        lines.append("pruned never slower than the original in any runtime and batch")
    for batch, share in TARGETS.items():
        best = [r for r in rows if r["runtime"] == "best" and r["batch"] == batch]
        missed = [r for r in best if r["realised_over_theory"] < share]
        if not best:
            continue
        if missed:
            where = ", ".join(f"{_where(r)} {r['realised_over_theory']:.1%}" for r in missed)
            lines.append(f"best vs best below {share:.0%} of theory at batch {batch}: {where}")
        else:
            lines.append(f"best vs best at least {share:.0%} of theory at batch {batch}")
    return lines


def _where(row: dict[str, Any]) -> str:
    return f"{NETWORKS.get(row['arch'], row['arch'])} {row['image_size']}×{row['image_size']}"


def _cpu_table(r: dict[str, Any]) -> list[str]:
    sec = r["sections"]["inference"]
    m = sec["default_channel_multiple"]
    summary = sec["summary"]
    multiples = sec["multiples"]
    best = {
        (x["arch"], x["image_size"], x["batch"], x["channel_multiple"]): x
        for x in summary
        if x["runtime"] == "best"
    }
    header = ["network", "batch", "MAC theory"]
    header += [f"best vs best, m={k}" for k in multiples] + [f"slowest runtime, m={m}", "spread"]
    rows = []
    for (arch, size, batch, k), x in best.items():
        if k != m:
            continue
        cells = [_where(x), str(batch), f"{1 / x['macs_ratio']:.2f}×"]
        for k2 in multiples:
            y = best[(arch, size, batch, k2)]
            cells.append(f"{y['speedup']:.2f}× ({y['realised_over_theory']:.0%})")
        per_runtime = [
            y
            for y in summary
            if (y["arch"], y["image_size"], y["batch"], y["channel_multiple"])
            == (arch, size, batch, m)
            and y["runtime"] != "best"
        ]
        slow = min(per_runtime, key=lambda y: y["speedup"])
        cells.append(f"{slow['speedup']:.2f}× ({IMPL_NAMES[slow['runtime']]})")
        cells.append(f"{x['spread']:.0%}")
        rows.append(cells)
    return _table(header, rows)


def _gpu(gpu: dict[str, Any]) -> list[str]:
    e, args = gpu["end_to_end"], gpu["args"]
    rate = {
        k: ", ".join(f"{NETWORKS[a]} {t[k]['median']:,.0f}" for a, t in gpu["throughput"].items())
        for k in ("train_images_per_s", "score_images_per_s")
    }
    first = next(iter(gpu["latency"].values()))["batch_1"]["speedup"]
    multiples = " / ".join(k[1:] for k in _order(first))
    lat = []
    for batch in ("batch_1", "batch_128"):
        parts = []
        for arch, res in gpu["latency"].items():
            s = res[batch]["speedup"]
            parts.append(f"{NETWORKS[arch]} " + " / ".join(f"{s[k]:.2f}×" for k in _order(s)))
        lat.append(f"at {batch.replace('_', ' ')} {'; '.join(parts)}")
    return [
        f"On a GPU ({gpu['device']}, torch {gpu['torch']}; `benchmarks/gpu_paper_run.py`) the "
        "papers' configuration (`params-paper.yaml`) ran end to end under `torchrun` on a "
        f"generated VGGFace2-shaped tree of {args['identities']} identities × {args['images']} "
        f"images with loose boxes and pose templates, at 113×113: preparation {e['prepare_s']:.0f}"
        f" s, {args['epochs']} training epochs {e['train_s']:.0f} s, {args['steps']} pruning "
        f"steps {e['prune_s']:.0f} s (each including process start and evaluation). Images per "
        f"second at batch 128 from memory: a training step {rate['train_images_per_s']}; a "
        f"Taylor scoring step {rate['score_images_per_s']}. Pruned against original latency, "
        f"eval in channels_last, for m = {multiples}: {'; '.join(lat)}.",
    ]


def _order(keys) -> list[str]:
    """``"m1", "m8", "m16"`` by their multiple, not as text."""
    return sorted(keys, key=lambda k: int(k[1:]))


def readme_block(
    results: dict[str, Any], gpu: dict[str, Any] | None, pipeline_multiple: int
) -> str:
    """The README's speed block from ``results.json`` (and ``gpu_results.json`` when given);
    ``pipeline_multiple``: the ``channel_multiple`` params.yaml sets."""
    sec = results["sections"]["inference"]
    m, machine = sec["default_channel_multiple"], results["machine"]
    worst = {
        k: min(
            x["realised_over_theory"]
            for x in sec["summary"]
            if x["runtime"] == "best" and x["channel_multiple"] == k
        )
        for k in sec["multiples"]
    }
    lines = [
        f"Measured by `make bench` on {machine['cpu']} ({machine['usable_cpus']} cores, "
        f"{results['settings']['threads']} threads; torch {machine['versions']['torch']}, ONNX "
        f"Runtime {machine['versions']['onnxruntime']}): the pipeline's trained networks, each "
        "pruned to the depth of its Taylor run with every layer group kept at a multiple m of "
        "channels. Speed-up = original time / pruned time; in brackets its share of the MAC "
        "theory; best = each network's fastest runtime among BN-folded channels_last eager and "
        "ONNX Runtime (basic or full graph optimisation); spread = IQR / median of the timings.",
        "",
        *_cpu_table(results),
        f"This measurement favours m = **{m}**: of the multiples whose pruned networks are never "
        "slower than the original in any runtime, the one whose worst best-vs-best share of the "
        "theory is highest, a larger multiple having to win by more than 3 points ("
        + ", ".join(f"m={k}: {v:.0%}" for k, v in worst.items())
        + f"); the pipeline prunes with `channel_multiple: {pipeline_multiple}` (params.yaml). "
        f"With m = {m}: {'; '.join(_targets(sec['summary'], m))}.",
    ]
    if gpu:
        lines += ["", *_gpu(gpu)]
    return "\n".join(lines) + "\n"
