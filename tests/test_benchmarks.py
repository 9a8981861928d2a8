"""The benchmark suite runs end to end (``benchmarks/run.py --quick``) and reports numbers.

Functional only: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QUICK_SECTIONS = ("inference", "training", "scoring", "surgery", "data", "engine")

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return results, (out / "results.md").read_text(encoding="utf-8")


def test_every_quick_section_reports_numbers(quick_results):
    results, md = quick_results
    m = results["machine"]
    assert m["cpu"] and m["torch_threads"] >= 1 and m["versions"]["torch"]
    sections = results["sections"]
    assert set(sections) == set(QUICK_SECTIONS)
    assert all("error" not in s for s in sections.values())

    for config in sections["inference"]["configs"]:
        assert 0 < config["mac_ratio"] < 1 and 0 < config["param_ratio"] < 1
        for batch in config["batches"].values():
            assert set(batch) == {"original"} | {f"m{m}" for m in config["variants"]}
            for timings in batch.values():
                assert all(_positive(timings[i]["median"]) for i in sections["inference"]["impls"])
    for arch in sections["training"]["archs"].values():
        assert all(_positive(t) for t in arch["per_step_s"].values())
        assert isinstance(arch["overhead"], float)
    scoring = sections["scoring"]
    assert all(_positive(a["ratio"]) for a in scoring["archs"].values())
    assert _positive(scoring["memory"]["peak_rss_mib_few"])
    assert _positive(scoring["memory"]["peak_rss_mib_many"])
    for arch in sections["surgery"]["archs"].values():
        assert _positive(arch["median_s"]["total"]) and arch["channels_removed"] > 0
    assert all(_positive(v) for v in sections["data"]["images_per_s"].values())
    engine = sections["engine"]["rows"]
    assert {r["library"] for r in engine} == {"facepruning", "torch_pruning"}
    assert all(r["pruned_equals_masked"] and r["params"][1] < r["params"][0] for r in engine)

    titles = (
        "Inference",
        "training step",
        "Taylor scoring",
        "Channel removal",
        "Data",
        "Torch-Pruning",
    )
    for title in titles:
        assert title in md


def test_onnx_and_fused_outputs_match_pytorch(quick_results):
    results, _ = quick_results
    for config in results["sections"]["inference"]["configs"]:
        for which, diffs in config["onnx"]["max_abs_diff"].items():
            scale = config["onnx"]["output_scale"][which]
            assert set(diffs) >= {"ort_basic", "ort_all", "fused", "eager_cl"}
            for impl, diff in diffs.items():
                assert diff <= 1e-3 * max(scale, 1.0), (config["arch"], which, impl, diff)


def test_quick_inference_reports_a_summary_row_per_runtime_and_multiple(quick_results):
    results, md = quick_results
    summary, m = results["summary"], results["default_channel_multiple"]
    multiples = results["sections"]["inference"]["multiples"]
    assert m in multiples and "Default multiple chosen on this machine" in md
    keys = {"arch", "image_size", "batch", "runtime", "channel_multiple", "macs_ratio"}
    for row in summary:
        assert keys | {"speedup", "realised_over_theory"} <= set(row)
        assert row["realised_over_theory"] == pytest.approx(row["speedup"] * row["macs_ratio"])
    runtimes = {(r["batch"], r["channel_multiple"], r["runtime"]) for r in summary}
    impls = results["sections"]["inference"]["impls"]
    assert len(runtimes) == len(summary) == 2 * len(multiples) * (len(impls) + 1)


def test_channel_multiple_layouts_reproduce_the_reference_and_round_it():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import aligned_variants, layout, synthetic_prune

    from facepruning.models import build_model

    original = build_model("mobilenet_v2", num_classes=10).eval()
    reference = build_model("mobilenet_v2", num_classes=10).eval()
    reference.load_state_dict(original.state_dict())
    synthetic_prune(reference, fraction=0.37)
    kept = layout(reference)
    variants = aligned_variants(original, kept, (1, 8))
    assert layout(variants[1]) == kept
    rounded, size = layout(variants[8]), layout(original)
    assert all(c % 8 == 0 or c == size[g] or size[g] < 8 for g, c in rounded.items())
    assert sum(rounded.values()) <= sum(kept.values())  # at least as many channels removed


def test_readme_speed_block_is_generated_from_the_committed_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import report
    from run import pipeline_multiple

    from facepruning.readme import replace_blocks

    results = json.loads((ROOT / "benchmarks" / "results.json").read_text(encoding="utf-8"))
    gpu_path = ROOT / "benchmarks" / "gpu_results.json"
    gpu = json.loads(gpu_path.read_text(encoding="utf-8")) if gpu_path.is_file() else None
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = {"speed": report.readme_block(results, gpu, pipeline_multiple())}
    assert replace_blocks(text, block) == text, "README.md's speed block is stale: make bench"


def test_the_chosen_multiple_is_never_slower_first_then_best_in_the_worst_case():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_inference import choose_multiple

    def rows(m, worst_share, slowest):
        best = {"runtime": "best", "channel_multiple": m, "speedup": 2.0}
        return [
            {**best, "realised_over_theory": worst_share},
            {**best, "realised_over_theory": worst_share + 0.2},
            {"runtime": "ort_basic", "channel_multiple": m, "speedup": slowest},
        ]

    faster_but_sometimes_slower = rows(1, 0.4, 0.7) + rows(8, 0.75, 1.1) + rows(16, 0.81, 0.78)
    assert choose_multiple(faster_but_sometimes_slower) == 8
    all_sometimes_slower = rows(1, 0.4, 0.7) + rows(8, 0.75, 0.9) + rows(16, 0.81, 0.8)
    assert choose_multiple(all_sometimes_slower) == 16  # beats 8 by more than the margin
    within_margin = rows(1, 0.4, 1.2) + rows(8, 0.75, 1.1) + rows(16, 0.77, 1.1)
    assert choose_multiple(within_margin) == 8


def test_perturbed_kernels_report_tells_a_crossed_verdict_from_a_moved_one():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from perturbed_kernels import compare, markdown

    def line(verdict, est):
        return {"verdict": verdict, "estimate": est, "low": est - 0.01, "high": est + 0.01}

    before = {"C1": line("holds", -0.02), "C3": line("holds", 0.03), "C5": line("refuted", 0.05)}
    after = {"C1": line("holds", -0.03), "C3": line("inconclusive", 0.0), "C5": line("holds", 0)}
    rows = {r["id"]: r["change"] for r in compare(before, after)}
    assert rows == {"C1": "same", "C3": "moved", "C5": "crossed"}
    text = markdown(compare(before, after))
    assert "Crossed between holds and refuted: C5." in text
    assert "Moved to or from inconclusive: C3." in text
    assert "| C3 | +0.030 [+0.020, +0.040] holds | +0.000 [-0.010, +0.010] inconclusive |" in text
    same = markdown(compare(before, before))
    assert "No verdict crossed" in same and "No verdict moved" in same
    pooled = {"C2": {**line("inconclusive", 0.0), "loo_low": -0.02, "loo_high": 0.025}}
    assert "+0.000 [-0.010, +0.010], without any one run [-0.020, +0.025] inconclusive" in (
        markdown(compare(pooled, pooled))
    )


def test_phase_clock_counts_a_nested_phase_in_the_inner_one_only():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_phases import PhaseClock

    now = [0.0]
    clock = PhaseClock(now=lambda: now[0])

    def wait(seconds):
        now[0] += seconds

    inner = clock.wrap("removal", lambda: wait(2.0))

    def outer():
        wait(1.0)
        inner()
        wait(4.0)

    clock.wrap("scoring", outer)()
    assert clock.seconds["removal"] == 2.0 and clock.seconds["scoring"] == 5.0
    assert clock.seconds["evaluation"] == 0.0
    # the final fine-tuning is made of fine-tuning calls: it keeps their time
    clock.wrap("final_finetuning", clock.wrap("finetuning", lambda: wait(3.0)))()
    assert clock.seconds["final_finetuning"] == 3.0 and clock.seconds["finetuning"] == 0.0


def test_stage_times_split_a_timestamped_log_by_stage_and_kind():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from stage_times import markdown, stage_seconds

    log = [
        "100 pip install ...",
        "160 Running stage 'prepare':",
        "161 > python -m facepruning run-notebook ...",
        "220 Running stage 'train@squeezenet':",
        "400 Running stage 'train@resnet50':",
        "700 Updating lock file 'dvc.lock'",
        "760 facepruning readme: README.md updated",
    ]
    stages, before, total = stage_seconds(log)
    assert stages == [("prepare", 60.0), ("train@squeezenet", 180.0), ("train@resnet50", 360.0)]
    assert (before, total) == (60.0, 660.0)
    text = markdown(stages, before, total)
    assert "| train | 2 | 9.0 | 82% |" in text and "| **total** | 3 | **11.0** | |" in text
