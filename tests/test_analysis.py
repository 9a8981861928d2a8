"""Tests of facepruning.analysis on small hand-made tables, against scipy and hand computations."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from facepruning import analysis as an
from facepruning import readings, verification
from facepruning import statistics as stats_mod
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


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 2, 3, 3, 3, 4, 5, 5, 6, 7, 7], [2, 1, 3, 3, 5, 4, 4, 6, 5, 7, 7, 9]),  # random
        ([1, 2, 2, 3, 4, 4], [1, 1, 2, 3, 3, 5]),  # 6! = 720 orders: every one tried (exact)
    ],
)
def test_permutation_pvalue_equals_a_direct_scipy_call_with_ties(x, y):
    def statistic(y_perm):
        return abs(stats.spearmanr(x, y_perm).statistic)

    direct = stats.permutation_test(
        (y,),
        statistic,
        permutation_type="pairings",
        n_resamples=999,
        alternative="greater",
        random_state=np.random.default_rng(7),
    )
    assert an.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert an.permutation_pvalue(x, y, n_permutations=999, seed=7) == pytest.approx(
        direct.pvalue, abs=1e-12
    )


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


def _write_run(
    folder, run, arch, criterion, normalize_scores=True, *, label=None, layers=None, **extra
):
    """A run's files as the prune stage writes them; ``label`` defaults to the criterion."""
    HIST.to_csv(folder / f"{run}_history.csv", index=False)
    if layers is not None:
        layers.rename_axis("group").to_csv(folder / f"{run}_layers.csv")
    meta = {"run": run, "arch": arch, "criterion": criterion, "normalize_scores": normalize_scores}
    meta["scores_normalised"] = normalize_scores and criterion not in ("random", "none")
    meta["label"] = criterion if label is None else label
    (folder / f"{run}.json").write_text(json.dumps({**meta, "steps": 4, **extra}))


def test_load_runs(tmp_path):
    prune, train = tmp_path / "prune", tmp_path / "train"
    prune.mkdir()
    train.mkdir()
    _write_run(prune, "mobilenet_v2-taylor_activation", "mobilenet_v2", "taylor_activation")
    _write_run(prune, "squeezenet-l1_norm", "squeezenet", "l1_norm", layers=LAYERS)
    (train / "squeezenet.json").write_text(json.dumps({"arch": "squeezenet", "t1/eer": 0.2}))
    runs = an.load_prune_runs(prune)
    assert list(runs) == ["mobilenet_v2-taylor_activation", "squeezenet-l1_norm"]
    run = runs["mobilenet_v2-taylor_activation"]
    assert (run.arch, run.criterion, run.layers) == ("mobilenet_v2", "taylor_activation", None)
    assert (run.normalize_scores, run.label, run.summary["steps"]) == (True, run.criterion, 4)
    pd.testing.assert_frame_equal(runs["squeezenet-l1_norm"].layers, LAYERS, check_names=False)
    both = an.combined_history(runs.values())
    assert len(both) == 2 * len(HIST) and set(both.criterion) == {"taylor_activation", "l1_norm"}
    assert list(both.columns[:5]) == ["run", "arch", "criterion", "variant", "normalize_scores"]
    assert an.load_train_runs(train).loc["squeezenet", "t1/eer"] == 0.2
    assert an.load_prune_runs(tmp_path / "missing") == {}
    assert an.load_train_runs(tmp_path / "missing").empty


def test_run_description_comes_from_the_json_not_the_file_name(tmp_path):
    # The file name suggests criterion "taylor_activation_unnormalized"; the JSON says what it is.
    unnormalised = "taylor_activation (unnormalized)"
    _write_run(tmp_path, "sq-a", "squeezenet", "taylor_activation", False, label=unnormalised)
    _write_run(tmp_path, "squeezenet-taylor_activation", "squeezenet", "taylor_activation")
    _write_run(tmp_path, "squeezenet-l1_norm", "squeezenet", "l1_norm")
    _write_run(tmp_path, "resnet50-random", "resnet50", "random", normalize_scores=False)
    runs = an.load_prune_runs(tmp_path)
    odd = runs["sq-a"]
    assert (odd.arch, odd.criterion, odd.normalize_scores) == (
        "squeezenet",
        "taylor_activation",
        False,
    )
    # the display label is the JSON's, in the history's "variant" column
    assert odd.label == odd.variant == unnormalised
    assert set(odd.history["variant"]) == {unnormalised}
    assert not odd.history["normalize_scores"].any()
    # "sq-a" sorts first, but the main SqueezeNet run is the normalised Taylor run.
    main = an.main_runs(runs, arch_order=["squeezenet", "mobilenet_v2", "resnet50"])
    assert main == {"squeezenet": "squeezenet-taylor_activation", "resnet50": "resnet50-random"}
    assert list(main) == ["squeezenet", "resnet50"]
    del runs["squeezenet-taylor_activation"]
    assert an.main_runs(runs)["squeezenet"] == "sq-a"  # an unnormalised Taylor run beats L1
    labels = {r.label for r in runs.values() if r.arch == "squeezenet"}
    assert labels == {unnormalised, "l1_norm"}


def test_metrics_without_the_run_keys_say_to_rerun_the_prune_stage(tmp_path):
    HIST.to_csv(tmp_path / "squeezenet-l1_norm_history.csv", index=False)
    with pytest.raises(DataError, match=r"squeezenet-l1_norm\.json.*missing.*rerun"):
        an.load_prune_runs(tmp_path)
    (tmp_path / "squeezenet-l1_norm.json").write_text(json.dumps({"arch": "squeezenet"}))
    with pytest.raises(DataError, match=r"squeezenet-l1_norm\.json lacks.*'criterion'.*rerun"):
        an.load_prune_runs(tmp_path)
    meta = {"run": "other", "arch": "squeezenet", "criterion": "l1_norm", "label": "l1_norm"}
    meta["scores_normalised"] = True
    (tmp_path / "squeezenet-l1_norm.json").write_text(json.dumps(meta | {"normalize_scores": True}))
    with pytest.raises(DataError, match="renamed"):
        an.load_prune_runs(tmp_path)
    # a JSON of a prune stage that did not write the display label yet
    del meta["label"]
    meta["run"] = "squeezenet-l1_norm"
    (tmp_path / "squeezenet-l1_norm.json").write_text(json.dumps(meta | {"normalize_scores": True}))
    with pytest.raises(
        DataError, match=r"squeezenet-l1_norm\.json lacks.*'label'.*rerun.*prune@squeezenet-l1_norm"
    ):
        an.load_prune_runs(tmp_path)
    _write_run(tmp_path, "squeezenet-l1_norm", "squeezenet", "l1_norm", label="")
    with pytest.raises(DataError, match=r"squeezenet-l1_norm\.json: label must be a non-empty"):
        an.load_prune_runs(tmp_path)


def test_finite_or_none():
    assert an.finite_or_none(np.float64("nan")) is None
    assert an.finite_or_none(None) is None
    assert an.finite_or_none(np.int64(3)) == 3.0 and isinstance(an.finite_or_none(1), float)


# --------------------------------------------------------------------------------------------
# identity-bootstrap intervals and claim verdicts (synthetic per-pair scores)
# --------------------------------------------------------------------------------------------
K_IDS = 10
_IDS = np.repeat(np.arange(K_IDS), 6)
_I, _J = np.triu_indices(_IDS.size, 1)
PAIRS = {"a": _IDS[_I], "b": _IDS[_J], "genuine": _IDS[_I] == _IDS[_J]}
_RNG = np.random.default_rng(0)
NOISE = _RNG.normal(size=_I.size) + _RNG.normal(0, 0.3, K_IDS)[PAIRS["a"]]  # same test images


def _run_scores(rows, seps, path="run.pt"):
    """RunScores whose row r separates genuine from impostor scores by ``seps[r]``."""
    s = np.stack([NOISE + sep * PAIRS["genuine"] for sep in seps])
    frame = pd.DataFrame(rows, columns=["step", "stage"])
    pairs = {b: dict(PAIRS) for b in ("t1", "t5")}
    return an.RunScores(
        Path(path), [f"id{i}" for i in range(K_IDS)], frame, pairs, {"t1": s, "t5": s}
    )


def _synthetic_run(key, arch, criterion, pruned, finetuned, final, *, layers=None):
    """A run of 5 steps (12, 24, 36, 48, 60% removed) and its scores; separations per row."""
    rows, seps, hist = [(0, "original")], [1.5], [(0, "original", 0.0, 1000)]
    for k in range(1, 6):
        pct = 12.0 * k
        for stage, sep in (("pruned", pruned[k - 1]), ("finetuned", finetuned[k - 1])):
            rows.append((k, stage))
            seps.append(sep)
            hist.append((k, stage, pct, int(1000 * (1 - pct / 120))))
    rows.append((5, "final"))
    seps.append(final)
    hist.append((5, "final", 60.0, 500))
    history = pd.DataFrame(hist, columns=["step", "stage", "filters_removed_pct", "params"])
    run = an.PruneRun(key, arch, criterion, history, {}, layers, label=criterion)
    return run, _run_scores(rows, seps, f"{key}.pt")


WIDTHS = np.array([8, 16, 16, 32, 64, 64, 128, 256])
WIDE_FIRST = pd.DataFrame(
    {0: WIDTHS, 5: WIDTHS - np.floor((WIDTHS - 1) * np.clip(WIDTHS / 300, 0, 0.9)).astype(int)}
)


def test_load_scores_round_trip_and_errors(tmp_path):
    from facepruning.artifacts import save_torch

    rs = _run_scores([(0, "original"), (1, "pruned")], [1.5, 1.0])
    raw = {
        "identities": rs.identities,
        "rows": [{"step": 0, "stage": "original"}, {"step": 1, "stage": "pruned"}],
        "pairs": {b: {k: torch.as_tensor(v) for k, v in PAIRS.items()} for b in ("t1", "t5")},
        "scores": {b: torch.as_tensor(rs.scores[b], dtype=torch.float32) for b in ("t1", "t5")},
    }
    save_torch(tmp_path / "r.pt", raw)
    got = an.load_scores(tmp_path / "r.pt")
    assert got.row(1, "pruned") == 1 and got.identities == rs.identities
    np.testing.assert_allclose(got.scores["t1"], rs.scores["t1"], atol=1e-6)
    with pytest.raises(DataError, match=r"missing\.pt.*missing.*rerun.*prune@missing"):
        an.load_scores(tmp_path / "missing.pt")
    save_torch(tmp_path / "bad.pt", {**raw, "scores": {"t1": torch.zeros(3, 4)}})
    with pytest.raises(DataError, match=r"bad\.pt.*shape.*rerun.*prune@bad"):
        an.load_scores(tmp_path / "bad.pt")
    save_torch(tmp_path / "old.pt", {"scores": {}})
    with pytest.raises(DataError, match=r"old\.pt.*keys"):
        an.load_scores(tmp_path / "old.pt")


def test_point_intervals_estimates_equal_verification():
    rs = _run_scores([(0, "original"), (1, "pruned")], [1.5, 1.0])
    counts = stats_mod.identity_bootstrap(K_IDS, 300)
    table = an.point_intervals(rs, counts, fars=(0.01,))
    assert set(table.metric) == {"t1/eer", "t5/eer", "t1/tar@far=0.01"} and len(table) == 6
    line = table[(table.step == 1) & (table.metric == "t1/eer")].iloc[0]
    assert line.estimate == verification.eer(rs.scores["t1"][1], PAIRS["genuine"])
    assert line.low < line.estimate < line.high
    tar = table[(table.step == 0) & (table.metric == "t1/tar@far=0.01")].iloc[0]
    assert tar.estimate == verification.tar_at_far(rs.scores["t1"][0], PAIRS["genuine"], 0.01)


def test_paired_difference_at_and_verdicts():
    counts = stats_mod.identity_bootstrap(K_IDS, 1000)
    rows = [(0, "original"), (1, "pruned")]
    base = _run_scores(rows, [1.5, 1.5])
    same = an.paired_difference_at(base, (1, "pruned"), base, (0, "original"), counts, "t1/eer")
    assert same == {"estimate": 0.0, "low": 0.0, "high": 0.0}
    better = _run_scores(rows, [1.5, 3.0])
    d = an.paired_difference_at(better, (1, "pruned"), base, (0, "original"), counts, "t1/eer")
    assert an.verdict(**d, threshold=0.0, direction="below") == "holds"
    assert an.verdict(**d, threshold=0.0, direction="above") == "refuted"
    worse = _run_scores(rows, [1.5, 0.3])
    d = an.paired_difference_at(worse, (1, "pruned"), base, (0, "original"), counts, "t1/eer")
    assert an.verdict(**d, threshold=0.02, direction="below") == "refuted"
    # a small change measured on few identities: the interval straddles 0
    few = stats_mod.identity_bootstrap(4, 1000)
    keep = (PAIRS["a"] < 4) & (PAIRS["b"] < 4)
    small = [_run_scores(rows, [1.5, 1.5]) for _ in range(2)]
    small[1].scores = {  # a slightly different network: its own small score changes
        b: v + np.random.default_rng(5).normal(0, 0.3, v.shape) for b, v in small[1].scores.items()
    }
    for rs in small:
        rs.identities = rs.identities[:4]
        rs.pairs = {b: {k: v[keep] for k, v in p.items()} for b, p in rs.pairs.items()}
        rs.scores = {b: v[:, keep] for b, v in rs.scores.items()}
    d = an.paired_difference_at(small[1], (1, "pruned"), small[0], (0, "original"), few, "t1/eer")
    assert d["low"] < 0 < d["high"]
    assert an.verdict(**d, threshold=0.0, direction="below") == "inconclusive"
    with pytest.raises(DataError, match="same t1 pairs"):
        an.paired_difference_at(small[1], (1, "pruned"), base, (0, "original"), counts, "t1/eer")
    assert an.verdict(0.0, float("nan"), 1.0, threshold=0.0, direction="below") == "inconclusive"


def _claims():
    good = _synthetic_run(
        "squeezenet-taylor_activation",
        "squeezenet",
        "taylor_activation",
        pruned=[3.0, 1.2, 0.9, 0.6, 0.3],
        finetuned=[3.0, 1.9, 1.7, 1.5, 1.4],
        final=1.5,
        layers=WIDE_FIRST,
    )
    bad = _synthetic_run(
        "resnet50-taylor_activation",
        "resnet50",
        "taylor_activation",
        pruned=[1.5, 1.2, 0.9, 0.6, 0.3],
        finetuned=[1.5, 1.2, 0.9, 0.6, 0.3],
        final=0.0,
        layers=WIDE_FIRST,
    )
    bad[0].normalize_scores = bad[0].scores_normalised = False  # C7 against the uniform null
    control = _synthetic_run(
        "squeezenet-control", "squeezenet", "none", pruned=[1.5] * 5, finetuned=[1.5] * 5, final=1.5
    )
    runs = {r.key: r for r, _ in (good, bad, control)}
    scores = {r.key: s for r, s in (good, bad, control)}
    counts = stats_mod.identity_bootstrap(K_IDS, 1000)
    lines = an.judge_claims(runs, scores, tolerance=0.02, counts=counts, n_null=2000)
    return {line["id"]: line for line in lines}


def test_judge_claims_on_synthetic_runs():
    got = _claims()
    assert set(got) >= {"C1", "C1/control", "C2", "C3", "C4", "C5", "C6", "C7"}
    for line in got.values():
        assert line["verdict"] in an.VERDICTS and set(line) >= {"claim", "metric", "detail"}
    # C1: step 1 (12% removed) separates far better than the original and than the control
    assert got["C1"]["verdict"] == "holds" and got["C1"]["high"] < 0
    assert "step 1" in got["C1"]["detail"] and got["C1/control"]["verdict"] == "holds"
    # C3: 1-image EER at 36% (step 3, sep 0.9 vs 1.5) clearly worse
    assert got["C3"]["verdict"] == "holds"
    # C4: fine-tuning recovers on squeezenet, not at all on resnet50 (identical rows: 0 width)
    assert got["C4/squeezenet"]["verdict"] == "holds"
    assert got["C4/resnet50"]["verdict"] == "inconclusive" and got["C4/resnet50"]["high"] == 0
    assert got["C4"]["verdict"] == "inconclusive"
    # C6: squeezenet's final row equals its original (change exactly 0), resnet50 collapses
    assert got["C6/squeezenet"]["verdict"] == "holds"
    assert got["C6/resnet50"]["verdict"] == "refuted" and got["C6"]["verdict"] == "refuted"
    # C5: one comparison, the first fine-tuned row with 24% fewer parameters (step 3, 30%; the
    # synthetic layer table is no SqueezeNet, so our own count), clearly within tolerance
    assert got["C5"]["verdict"] == "holds"
    assert "step 3 (finetuned): 30.0% fewer parameters, counted on our" in got["C5"]["detail"]
    # C3: any significant rise counts as degrading (threshold 0, not the tolerance)
    assert got["C3"]["threshold"] == 0.0
    # C7: wide groups lose most in both main runs, far beyond uniform random removal; but random
    # scores normalised per layer do nearly as much, so the normalised run is inconclusive and
    # only the unnormalised one holds; the control has no layer table
    normalised, unnormalised = (
        got["C7/squeezenet-taylor_activation"],
        got["C7/resnet50-taylor_activation"],
    )
    assert normalised["null"] == "normalised" and unnormalised["null"] == "uniform"
    assert normalised["estimate"] > normalised["null_uniform"][1]
    assert normalised["verdict"] == "inconclusive" and unnormalised["verdict"] == "holds"
    assert got["C7"]["verdict"] == "inconclusive" and "C7/squeezenet-control" not in got


def test_numbers_of_and_decided_by_name_the_network_behind_a_combined_verdict():
    lines = list(_claims().values())
    main = {"squeezenet": "squeezenet-taylor_activation", "resnet50": "resnet50-taylor_activation"}
    shown = an.numbers_of(lines)
    assert shown["C4"] == "resnet50" and shown["C6"] == "resnet50"
    assert shown["C7"] in main.values()
    assert not {"C1", "C2", "C3", "C5"} & set(shown)  # judged on one run
    # C4 and C6: resnet50 alone gives the overall verdict; C7: the normalised squeezenet run
    assert an.decided_by(lines, main) == {
        "C4": "resnet50",
        "C6": "resnet50",
        "C7": "squeezenet-taylor_activation",
    }
    compact = an.claims._claims_compact(lines)
    assert {c: compact[c].get("numbers_of") for c in ("C1", "C4", "C7")} == {
        "C1": None,
        "C4": "resnet50",
        "C7": "squeezenet-taylor_activation",
    }  # what the README names beside a combined claim's numbers
    table = an.claims_table(compact, lines)
    assert table.loc["C6", "numbers of"] == "resnet50" and table.loc["C1", "numbers of"] == ""
    assert "numbers of" not in an.claims_table(compact).columns


def test_interval_side():
    assert an.interval_side(0.1, 0.2) == "above" and an.interval_side(-0.2, -0.1) == "below"
    assert an.interval_side(-0.1, 0.1) == "across" and an.interval_side(0.0, 0.1) == "across"
    assert an.interval_side(None, 0.1) == "across" and an.interval_side(math.nan, 1) == "across"
    assert an.interval_side(0.5, 0.6, reference=0.55) == "across"
    assert an.interval_side(0.5, 0.6, reference=0.4) == "above"


def test_c5_is_one_comparison_fixed_in_advance():
    """Step 1 (10% fewer parameters) separates far better, step 3 (30%, the first with the
    claim's 24%) slightly worse: C5 is judged at step 3 alone, inconclusive there, however well
    another row does."""
    run, rs = _synthetic_run(
        "squeezenet-taylor_activation",
        "squeezenet",
        "taylor_activation",
        pruned=[3.0, 1.35, 1.35, 1.35, 1.35],
        finetuned=[3.0, 1.35, 1.35, 1.35, 1.35],
        final=3.0,
    )
    counts = stats_mod.identity_bootstrap(K_IDS, 1000)
    lines = an.judge_claims({run.key: run}, {run.key: rs}, tolerance=0.02, counts=counts)
    c5 = next(line for line in lines if line["id"] == "C5")
    assert c5["verdict"] == "inconclusive" and c5["low"] < 0.02 < c5["high"]
    assert "step 3 (finetuned): 30.0% fewer" in c5["detail"]


def test_c5_counts_parameters_as_the_paper_does(tmp_path):
    """With a SqueezeNet layer table the cut is counted with a 1000-way classifier, as paper 1
    counts its 1.24M, matching squeezenet_param_split built from an independent count."""
    from facepruning.models import build_model, count_parameters

    net = build_model("squeezenet", num_classes=30)
    groups = ["backbone.features.13.expand1x1", "backbone.features.13.expand3x3"]
    layers = pd.DataFrame({0: [256, 256], 1: [200, 200], 2: [150, 150]}, index=groups)
    full = count_parameters(build_model("squeezenet", num_classes=1000), include_classifier=False)
    original = count_parameters(net)
    history = pd.DataFrame(
        [(0, "original", 0.0, original), (1, "finetuned", 10.0, original - 60_000),
         (2, "finetuned", 20.0, original - 180_000)],
        columns=["step", "stage", "filters_removed_pct", "params"],
    )  # fmt: skip
    run = an.PruneRun("sq", "squeezenet", "taylor_activation", history, {}, layers, label="t")
    params, how = an.claims._paper_way_params(run)
    split = an.squeezenet_param_split(history, layers, full_backbone_params=full)
    assert how.startswith("counted as paper 1") and params.equals(split["params_paper_classes"])
    # step 2's classifier has 212 fewer inputs: 1000 x 212 weights fewer the paper's way, where
    # our 30-way count lost 30 x 212 of its 180,000
    assert params.iloc[0] - params.iloc[2] == 180_000 - 30 * 212 + 1000 * 212


def test_main_runs_never_picks_the_control():
    run, _ = _synthetic_run("sq-control", "squeezenet", "none", [1.5] * 5, [1.5] * 5, 1.5)
    other, _ = _synthetic_run("sq-l1", "squeezenet", "l1_norm", [1.5] * 5, [1.5] * 5, 1.5)
    assert an.main_runs({"sq-control": run, "sq-l1": other}) == {"squeezenet": "sq-l1"}
    assert an.control_runs({"sq-control": run, "sq-l1": other}) == {"squeezenet": "sq-control"}


def test_width_null_respects_the_channel_multiple_of_the_pruning_loop():
    """Uniform random removal through the loop's own selection with channel_multiple 16 (random
    scores, select_channels step by step): its rho sits inside the m=16 null far more often than
    inside the m=1 null, which ignores that narrow groups cannot shrink."""
    from facepruning.pruning.loop import select_channels

    widths = np.array([16, 16, 32, 48, 64, 64, 128, 192, 256, 256])
    rng = np.random.default_rng(3)
    inside = {1: 0, 16: 0}
    for trial in range(30):
        columns = {0: widths}
        for step in range(1, 7):
            left = columns[step - 1]
            scores = {str(g): torch.as_tensor(rng.random(c)) for g, c in enumerate(left)}
            plan = select_channels(scores, count=48, channel_multiple=16)
            columns[step] = left - np.array([len(plan.get(str(g), ())) for g in range(left.size)])
        assert all(c % 16 == 0 for c in columns[6])
        layers = pd.DataFrame(columns)  # every step: the null repeats the run's step sizes
        for m in inside:
            pos = an.width_null_position(layers, channel_multiple=m, n=2000, seed=trial)
            inside[m] += pos["low"] <= pos["rho"] <= pos["high"]
    assert inside[16] >= 25 and inside[16] > inside[1]


def test_random_scores_normalised_per_layer_sit_in_the_normalised_null_not_the_uniform_one():
    """C7's trap: random scores divided by each group's L2 norm (the loop's normalisation), then
    the loop's own selection. Wide groups lose more by that alone, so such a run lands above the
    uniform null nearly always, and inside the normalised null, which puts random scores
    through the same normalisation and selection, about 95% of the time."""
    from facepruning.pruning.loop import select_channels
    from facepruning.pruning.scoring import normalize_per_group

    widths = np.array([16, 16, 32, 48, 64, 64, 128, 192, 256, 256])
    generator = torch.Generator().manual_seed(5)
    inside = {"uniform": 0, "normalised": 0}
    for trial in range(30):
        columns = {0: widths}
        for step in range(1, 9):
            left = columns[step - 1]
            scores = {str(g): torch.rand(int(c), generator=generator) for g, c in enumerate(left)}
            plan = select_channels(normalize_per_group(scores), count=60, channel_multiple=8)
            columns[step] = left - np.array([len(plan.get(str(g), ())) for g in range(left.size)])
        pos = an.width_null_position(
            pd.DataFrame(columns),
            channel_multiple=8,
            normalised=True,
            per_step=60,
            n=1000,
            seed=trial,
        )
        assert pos["null"] == "normalised" and pos["low"] == pos["normalised"]["low"]
        for name in inside:
            inside[name] += pos[name]["low"] <= pos["rho"] <= pos[name]["high"]
    assert inside["normalised"] >= 25 and inside["uniform"] <= 5


def test_width_null_position_of_the_uniform_random_removal_is_inside():
    rng = np.random.default_rng(1)
    inside = 0
    for _ in range(40):
        channels = np.repeat(np.arange(WIDTHS.size), WIDTHS - 1)
        chosen = rng.choice(channels.size, 200, replace=False)
        left = WIDTHS - np.bincount(channels[chosen], minlength=WIDTHS.size)
        pos = an.width_null_position(pd.DataFrame({0: WIDTHS, 3: left}), n=2000)
        inside += pos["low"] <= pos["rho"] <= pos["high"]
    assert inside >= 34


# --------------------------------------------------------------------------------------------
# the summary (metrics/analysis.json and its CSV tables)
# --------------------------------------------------------------------------------------------
def _with_metrics(run, rs, counts):
    """The run with history columns t1/eer, t5/eer, t1/tar@far=0.01, macs and descriptor_size
    computed from its scores (as the prune stage writes them)."""
    table = an.point_intervals(rs, counts)
    for metric, frame in table.groupby("metric"):
        run.history[metric] = frame["estimate"].to_numpy()
    run.history["macs"] = run.history["params"] * 10
    run.history["descriptor_size"] = 64 - run.history["step"]
    return run


def _summary_inputs():
    counts = stats_mod.identity_bootstrap(K_IDS, 200)
    sq, rn, ta = "squeezenet", "resnet50", "taylor_activation"
    down = [1.5, 1.2, 0.9, 0.6, 0.3]
    specs = [
        (
            f"{sq}-{ta}",
            sq,
            ta,
            [3.0, 1.2, 0.9, 0.6, 0.3],
            [3.0, 1.9, 1.7, 1.5, 1.4],
            1.5,
            WIDE_FIRST,
        ),
        (
            f"{sq}-random",
            sq,
            "random",
            [1.0, 0.8, 0.6, 0.4, 0.2],
            [1.2, 1.0, 0.8, 0.6, 0.4],
            0.5,
            None,
        ),
        (f"{sq}-control", sq, "none", [1.5] * 5, [1.5] * 5, 1.5, None),
        (f"{rn}-{ta}", rn, ta, down, down, 0.0, WIDE_FIRST),
    ]
    runs, scores = {}, {}
    for key, arch, crit, pruned, finetuned, final, layers in specs:
        run, rs = _synthetic_run(key, arch, crit, pruned, finetuned, final, layers=layers)
        runs[key], scores[key] = _with_metrics(run, rs, counts), rs
    claims = an.judge_claims(runs, scores, tolerance=0.02, counts=counts, n_null=500)
    return runs, scores, claims, counts


def test_squeezerfacenet_pick_is_chosen_without_the_test_identities():
    """On the test EER the final row (50% fewer parameters) would pass; the validation EER
    passes only up to step 2's fine-tuned row, so that is the pick, measured on the test
    identities with a paired change from the original; without a validation EER the pick falls
    back to the test identities and says so."""
    runs, scores, _, counts = _summary_inputs()
    run = runs["squeezenet-taylor_activation"]
    reps = an.intervals._Replicates(scores, counts)
    on_test = an.squeezerfacenet_pick(run, reps, 0.02)
    assert on_test["selected_on"] == "t1/eer" and "optimistic" in on_test["selected_on_what"]
    assert on_test["stage"] == "final"
    passing = (run.history["step"] < 2) | (
        (run.history["step"] == 2) & (run.history["stage"] == "finetuned")
    )
    run.history["val/t1/eer"] = np.where(passing, 0.10, 0.30)
    pick = an.squeezerfacenet_pick(run, reps, 0.02)
    assert (pick["step"], pick["stage"], pick["selected_on"]) == (2, "finetuned", "val/t1/eer")
    assert "never the test identities" in pick["selected_on_what"]
    expected = reps.diff((run.key, (2, "finetuned")), (run.key, (0, "original")), "t1/eer", 0.95)
    assert pick["eer_change"] == pytest.approx(expected.estimate)
    assert pick["eer_change_ci"] == pytest.approx([expected.low, expected.high])
    row = run.history[(run.history["step"] == 2) & (run.history["stage"] == "finetuned")]
    assert pick["eer"] == pytest.approx(row["t1/eer"].iloc[0])


def _numbers(value):
    """The numeric leaves dvc metrics show lists (lists are left out, like dvc does)."""
    if isinstance(value, dict):
        return sum((_numbers(v) for v in value.values()), [])
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_summarize_on_synthetic_runs(tmp_path):
    runs, scores, claims, counts = _summary_inputs()
    trained = pd.DataFrame([{"arch": "squeezenet", "converged": True}]).set_index("arch")
    s = an.summarize(runs, scores, claims, tolerance=0.02, counts=counts, trained=trained)
    c = s.compact
    assert c["schema"] == an.SCHEMA == 3 and c["eer_tolerance"] == 0.02
    assert list(c["networks"]) == ["squeezenet", "resnet50"]
    sq = c["networks"]["squeezenet"]
    assert sq["control"] == "squeezenet-control" and sq["converged"] is True
    assert sq["params"] == [1000, 500] and sq["descriptor"] == [64, 59]
    assert sq["filters_removed_pct"] == 60.0
    t1 = sq["t1_eer"]
    # the original's estimate equals the history; intervals bracket their estimates
    assert t1["original"] == pytest.approx(
        runs["squeezenet-taylor_activation"].history["t1/eer"][0]
    )
    for k in ("original", "final"):
        assert t1[f"{k}_ci"][0] <= t1[k] <= t1[f"{k}_ci"][1]
    # the final row (sep 1.5) equals the control's final row (sep 1.5): difference exactly 0
    assert t1["vs_control"] == 0 and t1["vs_control_ci"] == [0, 0]
    assert c["networks"]["resnet50"]["control"] is None
    assert "vs_control" not in c["networks"]["resnet50"]["t1_eer"]
    # criteria: random separates worse at every matched share -> positive paired difference
    crit = c["criteria"]
    assert crit["reference"] == "taylor_activation" and crit["shares"] == [
        12.0,
        24.0,
        36.0,
        48.0,
        60.0,
    ]
    rnd = crit["variants"]["random"]
    assert rnd["diff"] > 0 and rnd["diff_ci"][0] > 0
    assert rnd["diff"] == pytest.approx(rnd["mean"] - crit["variants"]["taylor_activation"]["mean"])
    # SqueezerFaceNet: the smallest row within tolerance is the final row (sep 1.5 = original)
    pick = c["squeezerfacenet"]
    assert pick["params"] == 500 and pick["params_saved_pct"] == 50.0 and pick["stage"] == "final"
    assert set(c["claims"]) == {f"C{i}" for i in range(1, 8)}
    assert c["claims"]["C6"]["verdict"] == "refuted" and len(c["claims"]["C1"]["ci"]) == 2
    assert len(_numbers(c)) <= 80  # stays readable: the claims' per-network lines included
    # tables
    iv = s.tables["intervals"]
    assert set(iv["metric"]) == {"t1/eer", "t5/eer", "t1/tar@far=0.01"}
    assert len(iv) == 3 * sum(len(r.history) for r in runs.values())
    assert (iv["low"] <= iv["estimate"] + 1e-12).all() and (
        iv["estimate"] <= iv["high"] + 1e-12
    ).all()
    curves = s.tables["curves_squeezenet"]
    assert list(curves["step"]) == [0, 1, 2, 3, 4, 5]
    assert curves["t1_eer_pruned"].iloc[0] == curves["t1_eer_finetuned"].iloc[0]
    assert "t1_eer_control" in curves and "t1_eer_control" not in s.tables["curves_resnet50"]
    wide = s.tables["criteria_curves"]
    assert list(wide.columns) == ["filters_removed_pct", "random", "taylor_activation"]
    assert list(wide["filters_removed_pct"]) == [12.0, 24.0, 36.0, 48.0, 60.0]
    steps = s.tables["layers_squeezenet"]
    assert list(steps.columns) == ["layer", "group", "start", "middle", "end"]
    assert list(steps["start"]) == list(WIDTHS) and list(steps["end"]) == list(WIDE_FIRST[5])
    layers = s.tables["layers"]
    assert set(layers["run"]) == {"squeezenet-taylor_activation", "resnet50-taylor_activation"}
    # written: JSON + CSVs under metrics/analysis/, byte-deterministic
    written = an.write_summary(s, tmp_path / "metrics" / "analysis.json")
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert "metrics/analysis.json" in names and "metrics/analysis/intervals.csv" in names
    first = {p: p.read_bytes() for p in written}
    an.write_summary(s, tmp_path / "metrics" / "analysis.json")
    assert all(p.read_bytes() == b for p, b in first.items())
    assert json.loads((tmp_path / "metrics" / "analysis.json").read_text())["schema"] == 3
    # the DVC metric: a few dozen values with plain keys, the same numbers as the summary
    brief = json.loads((tmp_path / "metrics" / "analysis_headline.json").read_text())
    leaves = _leaves(brief)
    assert 10 < len(leaves) <= 40 and all(re.fullmatch(r"[A-Za-z0-9_.]+", k) for k in leaves)
    sq = c["networks"]["squeezenet"]
    assert brief["squeezenet"]["t1_eer_final"] == sq["t1_eer"]["final"]
    saved = 100 * (1 - sq["params"][1] / sq["params"][0])
    assert brief["squeezenet"]["params_saved_pct"] == pytest.approx(saved)
    assert brief["claims"]["C5"]["verdict"] == c["claims"]["C5"]["verdict"]
    for key in _keys(c):
        assert " " not in key and "," not in key and "/" not in key, key


def _leaves(value, prefix=""):
    if not isinstance(value, dict):
        return [prefix[:-1]]
    return sum((_leaves(v, f"{prefix}{k}.") for k, v in value.items()), [])


def _keys(value, prefix=""):
    if not isinstance(value, dict):
        return []
    return sum(([f"{prefix}{k}", *_keys(v, f"{prefix}{k}.")] for k, v in value.items()), [])


def test_summarize_without_scores_or_second_criterion():
    runs, scores, claims, counts = _summary_inputs()
    runs = {k: runs[k] for k in ("squeezenet-taylor_activation",)}
    s = an.summarize(runs, {}, [], tolerance=0.02, counts=counts)
    sq = s.compact["networks"]["squeezenet"]
    assert sq["t1_eer"]["original_ci"] is None and sq["t1_eer"]["original"] is not None
    assert s.compact["criteria"] is None and s.compact["claims"] == {}
    assert s.tables["intervals"].empty


def test_change_curves_equal_paired_differences_and_the_claims_read_their_points():
    good = _synthetic_run(
        "squeezenet-taylor_activation", "squeezenet", "taylor_activation",
        pruned=[3.0, 1.2, 0.9, 0.6, 0.3], finetuned=[3.0, 1.9, 1.7, 1.5, 1.4], final=1.5,
    )  # fmt: skip
    control = _synthetic_run(
        "squeezenet-control", "squeezenet", "none", pruned=[1.5] * 5, finetuned=[1.5] * 5, final=1.5
    )
    runs = {r.key: r for r, _ in (good, control)}
    scores = {r.key: s for r, s in (good, control)}
    counts = stats_mod.identity_bootstrap(K_IDS, 500)
    comparisons = {"original": ["t1/eer"], "control": ["t1/eer"]}
    curves = an.change_curves(runs, scores, counts={0: counts}, comparisons=comparisons)
    assert len(curves) == 2 * 5 and set(curves["training_runs"]) == {1}
    key, rs, crs = good[0].key, good[1], control[1]
    for row in curves.itertuples():
        base = (rs, (0, "original")) if row.against == "original" else (crs, (row.step, "pruned"))
        want = an.paired_difference_at(rs, (row.step, "pruned"), *base, counts, "t1/eer")
        assert (row.estimate, row.low, row.high) == pytest.approx(
            (want["estimate"], want["low"], want["high"])
        )
    lines = {c["id"]: c for c in an.judge_claims(runs, scores, tolerance=0.02, counts=counts)}
    for cid in ("C1", "C1/control", "C3"):
        c = lines[cid]
        at = curves[(curves["against"] == c["against"]) & (curves["step"] == c["at_step"])]
        assert at["filters_removed_pct"].item() == c["at_filters_removed_pct"]
        assert (at["low"].item(), at["high"].item()) == pytest.approx((c["low"], c["high"]))
    # the sentence follows the curves: step 1 better than the original, the late steps worse
    text = readings.change_reading(
        curves[curves["against"] == "original"], labels={"squeezenet": "SN"}
    )
    assert text.startswith("SN (1 training run") and "on the worse side of zero at 4 of 5" in text
    assert "the first at 24% removed, on the better side at 1;" in text
    # a TAR falling is worse: the same numbers read for a TAR swap the sides
    tar = curves[curves["against"] == "original"].assign(metric="t1/tar@far=0.01")
    text = readings.change_reading(tar, metric="t1/tar@far=0.01", labels={"squeezenet": "SN"})
    assert (
        "worse side of zero at 1 of 5 steps, the first at 12% removed, on the better side at 4"
        in text
    )
    assert key in set(curves["run"])
    with pytest.raises(DataError, match="compare against 'original' or 'control'"):
        an.change_curves(runs, scores, counts={0: counts}, comparisons={"final": ["t1/eer"]})


def test_the_envelope_a_verdict_is_taken_on_reaches_the_tables_and_the_readme():
    from facepruning import readme
    from facepruning.analysis.claims import _claims_compact

    line = {
        "id": "C2", "claim": an.CLAIMS["C2"], "metric": "t5/eer change", "estimate": 0.0,
        "low": -0.02, "high": 0.016, "threshold": 0.02, "verdict": "inconclusive", "detail": "",
        "identities": 40, "training_runs": 6, "run_share": 0.3, "loo_low": -0.025,
        "loo_high": 0.023,
    }  # fmt: skip
    compact = _claims_compact([line])
    assert compact["C2"]["without_one_run"] == [-0.025, 0.023]
    assert an.claims_table(compact).loc["C2", "without any one run"] == "[-0.025, +0.023]"
    rests = "40 identities, 6 training runs; without any one run [-0.025, +0.023]"
    assert readme._rests_on(compact["C2"]) == rests
    single = _claims_compact([{**line, "loo_low": float("nan"), "loo_high": float("nan")}])
    assert "without_one_run" not in single["C2"]
    assert an.claims_table(single).loc["C2", "without any one run"] == ""
    assert readings.fmt_envelope([None, 0.01]) == "[unbounded, +0.010]"


def test_rate_intervals_stay_within_the_range_of_a_rate():
    from facepruning.analysis.intervals import _rate_interval

    reps = np.r_[np.zeros(900), np.full(100, 0.05)]  # an EER near 0
    raw = an.expanded_interval(reps, 0.005, n=10)
    assert raw[0] < 0  # the widening alone would reach below any possible EER
    assert _rate_interval(reps, 0.005, n=10, level=0.95) == (0.0, pytest.approx(raw[1]))
    assert _rate_interval(1 - reps, 0.995, n=10, level=0.95)[1] == 1.0
