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
QUICK_SECTIONS = ("inference", "training", "scoring", "surgery", "data")

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
            for impl in sections["inference"]["impls"]:
                v = batch["impls"][impl]
                assert _positive(v["original"]["median"]) and _positive(v["pruned"]["median"])
                assert _positive(v["speedup"])
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

    for title in ("Inference", "training step", "Taylor scoring", "Channel removal", "Data"):
        assert title in md


def test_onnx_and_fused_outputs_match_pytorch(quick_results):
    results, _ = quick_results
    for config in results["sections"]["inference"]["configs"]:
        for which in ("original", "pruned"):
            diffs = config["onnx"]["max_abs_diff"][which]
            scale = config["onnx"]["output_scale"][which]
            assert set(diffs) >= {"ort_basic", "ort_all", "fused", "eager_cl"}
            for impl, diff in diffs.items():
                assert diff <= 1e-3 * max(scale, 1.0), (config["arch"], which, impl, diff)
