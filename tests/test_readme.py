"""README.md's result blocks are generated from metrics/analysis.json (facepruning.readme)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facepruning import analysis, readme
from facepruning.cli import main
from facepruning.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _interval(est, low, high):
    return {"original": est, "original_ci": [low, high], "final": est + 0.01,
            "final_ci": [low + 0.01, high + 0.01]}  # fmt: skip


SYNTHETIC = {
    "schema": 2,
    "eer_tolerance": 0.02,
    "main_runs": {"squeezenet": "squeezenet-taylor_activation"},
    "networks": {
        "squeezenet": {
            "run": "squeezenet-taylor_activation",
            "control": "squeezenet-control",
            "converged": True,
            "filters_removed_pct": 60.1,
            "params": [743834, 191608],
            "macs": [84067126, 34820075],
            "descriptor": [30, 30],
            "t1_eer": {
                **_interval(0.133, 0.11, 0.16),
                "vs_control": -0.004,
                "vs_control_ci": [-0.02, 0.012],
            },  # fmt: skip
            "t5_eer": _interval(0.078, 0.0, 0.2),
            "t1_tar_far1": _interval(0.5, 0.4, 0.6),
            "holds_to_pct": 60.1,
        },
        "resnet50": {
            "run": "resnet50-taylor_activation",
            "control": None,
            "filters_removed_pct": 61.8,
            "params": [23569502, 6456963],
            "t1_eer": _interval(0.142, 0.12, 0.17),
            "holds_to_pct": 0.0,
        },
    },
    "criteria": {
        "metric": "t1/eer",
        "stage": "pruned",
        "reference": "taylor_activation",
        "shares": [4.0, 8.0, 60.0],
        "variants": {
            "taylor_activation": {"run": "a", "mean": 0.119},
            "random": {"run": "b", "mean": 0.162, "diff": 0.043, "diff_ci": [0.02, 0.07]},
        },
    },
    "squeezerfacenet": {
        "run": "squeezenet-taylor_activation",
        "step": 15,
        "stage": "final",
        "metric": "t1/eer",
        "params": 191608,
        "params_saved_pct": 74.2,
        "filters_removed_pct": 60.1,
        "eer": 0.131,
        "eer_ci": [0.11, 0.15],
        "eer_change": -0.002,
        "eer_change_ci": [-0.03, 0.025],
        "selected_on": "val/t1/eer",
        "selected_on_what": "the validation images of the training identities",
    },  # fmt: skip
    "claims": {
        "C1": {
            "verdict": "holds",
            "estimate": -0.018,
            "ci": [-0.03, -0.005],
            "metric": "t1/eer change",
        },  # fmt: skip
        "C7": {
            "verdict": "holds",
            "estimate": 0.97,
            "ci": [0.8, 0.95],
            "metric": "spearman rho (width, share removed) vs its null",
            "null": "normalised",
            "null_uniform": [-0.2, 0.3],
            "null_normalised": [0.8, 0.95],
            "numbers_of": "resnet50-taylor_activation",
        },  # fmt: skip
    },
}

README = """# title
text before
<!-- results:begin -->
old table
<!-- results:end -->
middle
<!-- criteria:begin -->
<!-- criteria:end -->
<!-- claims:begin -->
x
<!-- claims:end -->
after
"""


def test_render_synthetic_analysis():
    blocks = readme.render(SYNTHETIC)
    assert set(blocks) == set(readme.BLOCKS)
    results = blocks["results"].splitlines()
    sq = next(line for line in results if line.startswith("| SqueezeNet"))
    assert "743,834 → 191,608" in sq and "60.1%" in sq
    assert "0.133 [0.110, 0.160] → 0.143 [0.120, 0.170]" in sq
    assert "-0.004 [-0.020, +0.012]" in sq and "30 → 30" in sq
    rn = next(line for line in results if line.startswith("| ResNet50"))
    assert "23.57M → 6.46M" in rn and "no control" in rn and "| n/a → n/a |" in rn
    assert "step 15 (final), 191,608 parameters (74.2% fewer)" in blocks["results"]
    assert "chosen on the validation images of the training identities)" in blocks["results"]
    change = "EER 0.131 [0.110, 0.150], -0.002 [-0.030, +0.025] from the original"
    assert change in blocks["results"]
    assert "random 0.162 (+0.043 [+0.020, +0.070] vs taylor_activation)" in blocks["criteria"]
    assert blocks["criteria"].index("taylor_activation 0.119") < blocks["criteria"].index("random")
    claims = blocks["claims"].splitlines()
    assert claims[2].startswith("| C1 | pruning 10-15%") and claims[2].endswith("| holds |")
    assert "-0.018 [-0.030, -0.005] (t1/eer change)" in claims[2]
    assert (
        "ρ +0.97 (random scores normalised per layer: [+0.80, +0.95], the verdict's null; "
        "uniform random: [-0.20, +0.30]); numbers of ResNet50, taylor_activation, one of the "
        "networks with this verdict" in claims[3]
    )


def test_replace_blocks_keeps_everything_outside_the_markers(tmp_path):
    new = readme.replace_blocks(README, readme.render(SYNTHETIC))
    assert new.startswith("# title\ntext before\n<!-- results:begin -->\n| network")
    assert "old table" not in new and "\nmiddle\n" in new and new.endswith("-->\nafter\n")
    assert readme.replace_blocks(new, readme.render(SYNTHETIC)) == new  # idempotent
    with pytest.raises(DataError, match="exactly one <!-- claims:begin -->"):
        readme.replace_blocks("no markers", {"claims": ""})


def test_update_readme_and_the_command(tmp_path, capsys):
    path, metrics = tmp_path / "README.md", tmp_path / "analysis.json"
    path.write_text(README)
    metrics.write_text(json.dumps(SYNTHETIC))
    args = ["readme", "--readme", str(path), "--metrics", str(metrics)]
    assert main([*args, "--check"]) == 2 and "out of date" in capsys.readouterr().err
    assert main(args) == 0 and "updated" in capsys.readouterr().out
    assert main([*args, "--check"]) == 0 and "up to date" in capsys.readouterr().out
    metrics.write_text(json.dumps({"networks": {}}))
    assert main(args) == 2 and "older notebook 04" in capsys.readouterr().err


def test_schema_versions_agree():
    assert readme.SCHEMA == analysis.SCHEMA


def test_readme_matches_the_committed_metrics():
    data = json.loads((ROOT / "metrics" / "analysis.json").read_text(encoding="utf-8"))
    if data.get("schema") is None:  # the old layout, until the pipeline is rerun
        pytest.skip("metrics/analysis.json predates schema 2: rerun dvc repro, then make repro")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.replace_blocks(text, readme.render(data)) == text, (
        "README.md is out of date with metrics/analysis.json: run python -m facepruning readme"
    )
