"""README.md's result blocks are generated from metrics/analysis.json (facepruning.readme)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from facepruning import analysis, readme
from facepruning.cli import main
from facepruning.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _interval(est, low, high):
    return {"original": est, "original_ci": [low, high], "final": est + 0.01,
            "final_ci": [low + 0.01, high + 0.01]}  # fmt: skip


SYNTHETIC = {
    "schema": 3,
    "eer_tolerance": 0.02,
    "main_runs": {
        "squeezenet": "squeezenet-taylor_activation",
        "resnet50": "resnet50-taylor_activation",
    },
    "networks": {
        "squeezenet": {
            "run": "squeezenet-taylor_activation",
            "control": "squeezenet-control",
            "test_identities": 10,
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
            "papers": "paper 1: slightly lower EER",
            "verdict": "holds",
            "threshold": 0.0,
            "identities": 40,
            "training_runs": 6,
            "estimate": -0.018,
            "ci": [-0.03, -0.005],
            "metric": "t1/eer change",
            "parts": {
                "control": {"verdict": "inconclusive", "estimate": -0.01, "ci": [-0.03, 0.01]}
            },
        },  # fmt: skip
        "C7": {
            "papers": "paper 2: the widest layers first",
            "verdict": "holds",
            "estimate": 0.97,
            "ci": [0.8, 0.95],
            "metric": "spearman rho (width, share removed) vs its null",
            "null": "normalised",
            "null_uniform": [-0.2, 0.3],
            "null_normalised": [0.8, 0.95],
            "numbers_of": "resnet50-taylor_activation",
            "parts": {
                "squeezenet-taylor_activation": {
                    "verdict": "inconclusive",
                    "estimate": 0.9,
                    "ci": [0.85, 0.95],
                },
                "squeezenet-random": {"verdict": "inconclusive", "estimate": 0.3, "ci": [0.1, 0.4]},
                "resnet50-taylor_activation": {
                    "verdict": "holds",
                    "estimate": 0.97,
                    "ci": [0.8, 0.95],
                },
            },
        },  # fmt: skip
        "C6": {
            "papers": "paper 2: a large share of filters, minimal loss",
            "verdict": "inconclusive",
            "threshold": 0.02,
            "identities": 40,
            "training_runs": 6,
            "estimate": 0.034,
            "ci": [-0.0102, 0.0825],
            "without_one_run": [-0.0197, 0.0951],
            "metric": "t1/eer change",
            "parts": {
                "squeezenet": {
                    "verdict": "inconclusive",
                    "estimate": 0.034,
                    "ci": [-0.0102, 0.0825],
                },
                "resnet50": {"verdict": "holds", "estimate": -0.0378, "ci": [-0.10268, 0.019881]},
            },
        },  # fmt: skip
    },
    "evidence": {
        "interval_method": "expanded percentile",
        "resamples": 10000,
        "coverage": [
            {"identities": 10, "folds": 1, "pooled": 0.931, "percentile": 0.882},
            {"identities": 40, "folds": 4, "pooled": 0.948, "percentile": 0.921},
        ],
        "networks": {
            "squeezenet": {
                "test_identities": 40,
                "folds": [0, 1, 2, 3],
                "seeds": [0, 1, 2],
                "training_runs": 6,
            },
            "resnet50": {"test_identities": 10, "folds": [0], "seeds": [0], "training_runs": 1},
        },  # fmt: skip
    },
}

README = """# title
text before
<!-- findings:begin -->
<!-- findings:end -->
<!-- evidence:begin -->
<!-- evidence:end -->
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
    assert claims[2].startswith("| C1 | paper 1: slightly lower EER |")
    assert claims[2].endswith("| +0.00 | 40 identities, 6 training runs | holds |")
    assert "-0.018 [-0.030, -0.005] (t1/eer change)" in claims[2]
    assert (
        "ρ +0.97 (random scores normalised per layer: [+0.80, +0.95], the verdict's null; "
        "uniform random: [-0.20, +0.30]); numbers of ResNet50, taylor_activation; ρ against the "
        "band of its null: SqueezeNet +0.90 [+0.85, +0.95]: inconclusive; ResNet50 +0.97 "
        "[+0.80, +0.95]: holds | the null band |  | holds |" in claims[4]
    )
    assert "random" not in claims[4].partition("band of its null")[2]  # main runs only
    assert (
        "against the equally trained control: -0.010 [-0.030, +0.010], inconclusive" in (claims[2])
    )
    assert "ResNet50 -0.0378 [-0.1027, +0.0199]: holds" in claims[3]  # not "+0.020: holds"
    assert "without any one run [-0.0197, +0.0951] | inconclusive |" in claims[3]
    findings = blocks["findings"]
    assert (
        "the final Taylor-pruned network (its main run: 10 test identities, one training run) is "
        "not distinguishable from the control's: SqueezeNet -0.004 [-0.020, +0.012] with 60% of "
        "filters removed." in findings
    )
    assert "ResNet50" not in findings  # no control: not compared
    assert "without any one of those runs: 2 holds (C1, C7, against random" in findings
    assert "has 74% fewer parameters than SqueezeNet and a 1-image EER -0.002 [" in findings
    evidence = blocks["evidence"]
    assert "SqueezeNet on 40 test identities (4 folds of held-out identities, seeds 0, 1, 2: " in (
        evidence
    )
    assert "6 training runs); ResNet50 on 10 test identities (1 fold" in evidence
    assert "seed 0: 1 training run)" in evidence and "10,000 resamples" in evidence
    assert "93.1% with 10 identities in 1 fold (the plain percentile interval: 88.2%)" in evidence


def test_replace_blocks_keeps_everything_outside_the_markers(tmp_path):
    new = readme.replace_blocks(README, readme.render(SYNTHETIC))
    assert new.startswith("# title\ntext before\n<!-- findings:begin -->\nOf the papers' 3 claims")
    assert "<!-- results:begin -->\n| network" in new
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


def test_the_command_fills_the_documents_beside_the_readme(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    Path("README.md").write_text(README)
    Path("docs/PAPERS.md").write_text("x\n<!-- evidence:begin -->\n<!-- evidence:end -->\n")
    Path("analysis.json").write_text(json.dumps(SYNTHETIC))
    assert main(["readme", "--metrics", "analysis.json"]) == 0
    assert "README.md updated" in capsys.readouterr().out
    assert "The claims rest on SqueezeNet" in Path("docs/PAPERS.md").read_text()
    assert "The claims rest on SqueezeNet" in Path("README.md").read_text()
    Path("docs/PAPERS.md").write_text("<!-- evidence:begin -->\nstale\n<!-- evidence:end -->\n")
    assert main(["readme", "--metrics", "analysis.json", "--check"]) == 2
    assert "docs/PAPERS.md is out of date" in capsys.readouterr().err


def test_readme_matches_the_committed_metrics():
    data, curves = readme.read_inputs(ROOT / "metrics" / "analysis.json")
    assert data.get("schema") == readme.SCHEMA, (
        "metrics/analysis.json predates this schema: rerun dvc repro, then make repro"
    )
    assert curves is not None  # the findings read the steps against the control too
    rendered = readme.render(data, curves)
    for name, blocks in readme.DOCUMENTS.items():
        text = (ROOT / name).read_text(encoding="utf-8")
        assert readme.replace_blocks(text, {b: rendered[b] for b in blocks}) == text, (
            f"{name} is out of date with metrics/analysis.json: run python -m facepruning readme"
        )


def test_findings_read_the_steps_against_the_control_when_the_curves_are_there():
    assert "Right after each pruning step" not in readme.render(SYNTHETIC)["findings"]
    curves = pd.DataFrame(
        {
            "against": ["control"] * 3 + ["original"],
            "arch": "squeezenet",
            "step": [1, 2, 3, 3],
            "filters_removed_pct": [10.0, 20.0, 30.0, 30.0],
            "metric": "t1/eer",
            "estimate": [0.0, 0.03, 0.05, 0.9],
            "low": [-0.01, 0.01, 0.02, 0.8],
            "high": [0.01, 0.05, 0.08, 1.0],
            "identities": 40,
            "training_runs": 6,
        }
    )
    findings = readme.render(SYNTHETIC, curves)["findings"]
    assert "against the control at the same step" in findings
    squeezenet = "SqueezeNet is worse at 2 of 3 steps, from 20% of filters removed (6 training"
    assert f"{squeezenet} runs, 40 test identities)." in findings
    assert "+0.900" not in findings  # the change from the original is not this sentence's
    # a network whose steps all contain zero is named as such; the sentence count stays three
    flat = curves.assign(arch="mobilenet_v2", low=-0.01, high=0.01)
    findings = readme.render(SYNTHETIC, pd.concat([curves, flat]))["findings"]
    assert "(6 training runs, 40 test identities), MobileNetV2 at none." in findings
    findings = readme.render(SYNTHETIC, flat)["findings"]
    assert "(pointwise 95% intervals pooled over every training run of the network), " in findings
    assert findings.endswith(
        "MobileNetV2 at none of them. The SqueezerFaceNet pick, "
        + (findings.partition(" The SqueezerFaceNet pick, ")[2])
    )
    assert findings.count(". ") == 2


def test_findings_say_each_final_network_on_its_side_of_the_control():
    worse = {"vs_control": 0.03, "vs_control_ci": [0.01, 0.05]}
    nets = dict(SYNTHETIC["networks"])
    nets["mobilenet_v2"] = {**nets["squeezenet"], "t1_eer": {**worse}, "filters_removed_pct": 58.0}
    mixed = readme.render({**SYNTHETIC, "networks": nets})["findings"]
    assert (
        "the final Taylor-pruned networks (each network's main run: 10 test identities, one "
        "training run) are: SqueezeNet -0.004 [-0.020, +0.012] with 60% of filters removed, not "
        "distinguishable from the control's, MobileNetV2 +0.030 [+0.010, +0.050] with 58% of "
        "filters removed, worse than the control's." in mixed
    )
    nets["squeezenet"] = {**nets["squeezenet"], "t1_eer": {**worse}}
    both = readme.render({**SYNTHETIC, "networks": nets})["findings"]
    assert "are each worse than its control: SqueezeNet +0.030 [+0.010, +0.050] with 60%" in both
