"""Tests of facepruning.analysis on small hand-made tables, against scipy and hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from facepruning import analysis as an
from facepruning import verification
from facepruning.errors import DataError
from facepruning.models import build_model, count_parameters


def _history(rows):
    cols = ["step", "stage", "filters_removed_pct", "params", "t1/eer", "t5/eer"]
    return pd.DataFrame(rows, columns=cols)


# step, stage, pct, params, t1, t5 (original t1 = 0.20, t5 = 0.10)
HIST = _history(
    [
        (0, "original", 0.0, 1000, 0.20, 0.10),
        (1, "pruned", 10.0, 900, 0.21, 0.09),
        (1, "finetuned", 10.0, 900, 0.19, 0.10),
        (2, "pruned", 20.0, 800, 0.25, 0.11),
        (2, "finetuned", 20.0, 800, 0.215, 0.12),
        (3, "pruned", 30.0, 700, 0.30, 0.20),
        (3, "finetuned", 30.0, 700, 0.24, 0.115),
        (4, "pruned", 40.0, 600, 0.22, 0.30),
        (4, "finetuned", 40.0, 600, 0.23, 0.30),
        (4, "final", 40.0, 600, 0.205, 0.29),
    ]
)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, 30).astype(float)  # many ties
    y = x + rng.integers(0, 4, 30)
    assert an.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_hand_values():
    assert an.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert an.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3) vs (1,3,2): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/24 = 0.5
    assert an.spearman([1, 2, 3], [5, 9, 7]) == pytest.approx(0.5)
    assert math.isnan(an.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(DataError):
        an.spearman([1, 2], [1, 2, 3])


def test_permutation_pvalue_is_close_to_scipy_and_small_for_a_perfect_order():
    x = np.arange(12.0)
    assert an.permutation_pvalue(x, x, n_permutations=999) == pytest.approx(1 / 1000)
    rng = np.random.default_rng(3)
    y = x + rng.normal(0, 4, 12)
    p = an.permutation_pvalue(x, y, n_permutations=4000)
    assert p == pytest.approx(stats.spearmanr(x, y).pvalue, abs=0.03)


LAYERS = pd.DataFrame(
    {0: [16, 64, 128, 32], 1: [16, 60, 100, 32], 2: [16, 50, 64, 30], 3: [16, 40, 32, 30]},
    index=["a", "b", "c", "d"],
)


def test_width_order_by_hand():
    t = an.width_order(LAYERS)
    assert t["width"].tolist() == [16, 64, 128, 32]
    assert t["removed_share"].tolist() == pytest.approx([0.0, 24 / 64, 96 / 128, 2 / 32])
    # a never loses a channel: placed after the last step (3 + 1)
    assert t["first_step"].tolist() == [4, 1, 1, 2]
    assert t["never"].tolist() == [True, False, False, False]


def test_width_order_columns_out_of_order_are_sorted():
    shuffled = LAYERS[[2, 0, 3, 1]]
    pd.testing.assert_frame_equal(an.width_order(shuffled), an.width_order(LAYERS))


def test_width_rank_summary_matches_scipy():
    s = an.width_rank_summary(LAYERS, n_permutations=200)
    t = an.width_order(LAYERS)
    assert s["n_groups"] == 4 and s["n_groups_pruned"] == 3
    assert s["rho_removed"] == pytest.approx(stats.spearmanr(t.width, t.removed_share).statistic)
    assert s["rho_first_step"] == pytest.approx(stats.spearmanr(t.width, t.first_step).statistic)
    assert s["rho_removed"] == pytest.approx(1.0)  # widest lose the largest share here
    assert s["rho_first_step"] < 0  # ... and start first
    assert 0 < s["p_removed"] <= 1


def test_smallest_within_tolerance_contiguous():
    # t1 limit 0.22: step 1 passes (both), step 2 passes via finetuned 0.215, step 3 fails both
    # (0.30, 0.24), so step 4 (final 0.205) does not count although it is within tolerance.
    row = an.smallest_within_tolerance(HIST, "t1/eer", 0.02)
    assert (row["step"], row["stage"], row["params"]) == (2, "finetuned", 800)
    loose = an.smallest_within_tolerance(HIST, "t1/eer", 0.02, contiguous=False)
    assert (loose["step"], loose["stage"]) == (4, "final")
    # pruned only: step 1 passes (0.21), step 2 fails (0.25) -> step 1
    row = an.smallest_within_tolerance(HIST, "t1/eer", 0.02, stages=["pruned"])
    assert (row["step"], row["params"]) == (1, 900)
    # t5 limit 0.12: pruned 0.09, 0.11 pass; 0.20 fails
    assert an.largest_removal_within_tolerance(HIST, "t5/eer", 0.02) == 20.0
    assert an.largest_removal_within_tolerance(
        HIST, "t5/eer", 0.02, stages=["finetuned", "final"]
    ) == pytest.approx(30.0)
    assert an.smallest_within_tolerance(HIST, "t1/eer", -0.5) is None
    assert an.largest_removal_within_tolerance(HIST, "t1/eer", -0.5) == 0.0


def test_smallest_within_tolerance_needs_an_original_row():
    with pytest.raises(DataError):
        an.smallest_within_tolerance(HIST[HIST.stage != "original"], "t1/eer", 0.02)


def test_interpolate_at_by_hand():
    got = an.interpolate_at(HIST, "t1/eer", [0, 5, 15, 40, 45])
    # pruned chain: (0, .20) (10, .21) (20, .25) (30, .30) (40, .22)
    assert got[:4] == pytest.approx([0.20, 0.205, 0.23, 0.22])
    assert math.isnan(got[4])
    ft = an.interpolate_at(HIST, "t1/eer", [25], stage="finetuned")
    assert ft == pytest.approx([(0.215 + 0.24) / 2])


def _squeezenet_counts(num_classes):
    net = build_model("squeezenet", num_classes=num_classes)
    return count_parameters(net), count_parameters(net, include_classifier=False)


def test_squeezenet_classifier_params_match_the_model():
    total, backbone = _squeezenet_counts(7)
    assert total - backbone == an.squeezenet_classifier_params(512, 7)


def test_squeezenet_param_split():
    total, backbone = _squeezenet_counts(30)
    layers = pd.DataFrame(
        {0: [64, 256, 256], 1: [60, 250, 200]},
        index=["x", "backbone.features.13.expand1x1", "backbone.features.13.expand3x3"],
    )
    removed = 1000  # backbone parameters removed at step 1 besides the classifier's inputs
    step1 = total - removed - 30 * 62
    hist = pd.DataFrame({"step": [0, 1], "stage": ["original", "pruned"], "params": [total, step1]})
    out = an.squeezenet_param_split(hist, layers, full_backbone_params=backbone)
    assert out["num_classes"].tolist() == [30, 30]
    assert out["classifier_inputs"].tolist() == [512, 450]
    assert out["backbone_params"].tolist() == [backbone, backbone - removed]
    assert out["params_paper_classes"].iloc[0] == _squeezenet_counts(1000)[0]
    assert out["params_paper_classes"].iloc[1] == backbone - removed + 1000 * 453
    with pytest.raises(DataError):
        an.squeezenet_param_split(hist, layers, full_backbone_params=backbone + 1)


def test_eer_standard_error_matches_simulation():
    rng = np.random.default_rng(0)
    n_gen, n_imp = 60, 600
    g = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    eers = np.array(
        [
            verification.eer(np.r_[rng.normal(1.0, 1, n_gen), rng.normal(0, 1, n_imp)], g)
            for _ in range(300)
        ]
    )
    predicted = an.eer_standard_error(eers.mean(), n_gen, n_imp)
    assert predicted == pytest.approx(eers.std(), rel=0.2)
    assert math.isnan(an.eer_standard_error(0.1, 0, 10))


def test_load_runs(tmp_path):
    prune, train = tmp_path / "prune", tmp_path / "train"
    prune.mkdir()
    train.mkdir()
    HIST.to_csv(prune / "mobilenet_v2-taylor_activation_history.csv", index=False)
    HIST.to_csv(prune / "squeezenet-l1_norm_history.csv", index=False)
    LAYERS.rename_axis("group").to_csv(prune / "squeezenet-l1_norm_layers.csv")
    (prune / "squeezenet-l1_norm.json").write_text(json.dumps({"arch": "squeezenet"}))
    (train / "squeezenet.json").write_text(json.dumps({"arch": "squeezenet", "t1/eer": 0.2}))
    runs = an.load_prune_runs(prune)
    assert list(runs) == ["mobilenet_v2-taylor_activation", "squeezenet-l1_norm"]
    run = runs["mobilenet_v2-taylor_activation"]
    assert (run.arch, run.criterion, run.layers) == ("mobilenet_v2", "taylor_activation", None)
    pd.testing.assert_frame_equal(runs["squeezenet-l1_norm"].layers, LAYERS, check_names=False)
    both = an.combined_history(runs.values())
    assert len(both) == 2 * len(HIST) and set(both.criterion) == {"taylor_activation", "l1_norm"}
    assert an.load_train_runs(train).loc["squeezenet", "t1/eer"] == 0.2
    assert an.load_prune_runs(tmp_path / "missing") == {}
    assert an.load_train_runs(tmp_path / "missing").empty


def test_finite_or_none():
    assert an.finite_or_none(np.float64("nan")) is None
    assert an.finite_or_none(None) is None
    assert an.finite_or_none(np.int64(3)) == 3.0 and isinstance(an.finite_or_none(1), float)
