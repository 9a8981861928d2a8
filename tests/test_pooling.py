"""Replicate training runs pooled into one interval, checked on synthetic data with known answers:
the folds' identity split, the stratified resamples, the pooled estimate and its training noise,
the expanded interval's coverage, and the EER by bisection against the full rate tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from facepruning import statistics as st
from facepruning.analysis import coverage as cv
from facepruning.analysis import pooling
from facepruning.analysis.claims import _entry, verdict
from facepruning.analysis.runs import PruneRun, RunScores
from facepruning.errors import DataError, ParameterError
from facepruning.prepare.manifest import split_identities

IDS = [f"s{i:02d}" for i in range(40)]


def test_folds_hold_out_disjoint_groups_and_fold_0_is_the_plain_draw():
    plain = np.random.default_rng(3).choice(40, size=10, replace=False)
    assert split_identities(IDS, test_identities=10, seed=3)[1] == [IDS[i] for i in sorted(plain)]
    tests = [split_identities(IDS, test_identities=10, seed=3, fold=f)[1] for f in range(4)]
    assert sorted(sum(tests, [])) == IDS  # every identity tested exactly once
    train, test = split_identities(IDS, test_identities=10, seed=3, fold=2)
    assert not set(train) & set(test) and len(train) == 30


def test_a_fold_beyond_the_identities_or_with_a_protocol_is_refused():
    with pytest.raises(ParameterError, match="fold=4 needs 50 identities"):
        split_identities(IDS, test_identities=10, seed=0, fold=4)
    with pytest.raises(ParameterError, match="protocol fixes the test identities"):
        split_identities(IDS, test_identities=IDS[:5], seed=0, fold=1)


def _units(values: dict, reps: dict | None = None, b: int = 2000, sd: float = 0.01, seed=0):
    rng = np.random.default_rng(seed)
    return pooling.Units(
        {
            u: (e, (reps or {}).get(u, e + rng.normal(0, sd, b)))
            for u, e in values.items()  # replicates centred on the estimate
        }
    )


def test_the_estimate_weighs_every_fold_once_whatever_its_seeds():
    units = _units({(0, 0): 0.10, (0, 1): 0.20, (1, 0): 0.40})
    pooled = pooling.pool(units, identities={0: 10, 1: 10})
    assert pooled.estimate == pytest.approx((0.15 + 0.40) / 2)
    assert (pooled.identities, pooled.folds, pooled.training_runs) == (20, 2, 3)


def test_training_noise_widens_the_interval_only_when_it_is_measured():
    one_seed = pooling.pool(_units({(0, 0): 0.05, (1, 0): 0.05}), identities={0: 10, 1: 10})
    assert math.isnan(one_seed.run_sd) and math.isnan(one_seed.run_share)
    assert one_seed.low == pytest.approx(one_seed.identity_low)
    seeds = _units({(0, 0): 0.02, (0, 1): 0.08, (1, 0): 0.05})
    pooled = pooling.pool(seeds, identities={0: 10, 1: 10})
    assert pooled.run_sd > 0.01 and 0 < pooled.run_share < 1
    assert pooled.high - pooled.low > pooled.identity_high - pooled.identity_low


def test_a_claim_clear_of_zero_by_identities_alone_turns_inconclusive_with_training_noise():
    # every run shows a rise, but two trainings of one fold disagree by more than the rise
    units = _units({(0, 0): 0.005, (0, 1): 0.075, (1, 0): 0.04}, sd=0.004)
    pooled = pooling.pool(units, identities={0: 10, 1: 10})
    assert pooled.identity_low > 0  # identities alone: "holds"
    args = {"threshold": 0.0, "direction": "above"}
    assert verdict(pooled.estimate, pooled.identity_low, pooled.identity_high, **args) == "holds"
    assert verdict(pooled.estimate, pooled.low, pooled.high, **args) == "inconclusive"


def test_a_verdict_carried_by_one_training_run_is_inconclusive():
    # four folds agree on no change; fold 3's one run alone pulls the pooled interval below 0
    values = {(0, 0): 0.0, (0, 1): 0.002, (1, 0): 0.0, (2, 0): 0.0, (3, 0): -0.06}
    units = _units(values, sd=0.003)
    ids = {f: 10 for f in range(4)}
    pooled = pooling.pool(units, identities=ids)
    # the envelope, recomputed independently: every pool without one run, and the full one
    subsets = [
        pooling.pool(
            pooling.Units({u: v for u, v in units.values.items() if u != out}), identities=ids
        )
        for out in values
    ]
    assert pooled.loo_low == min([pooled.low, *(p.low for p in subsets)])
    assert pooled.loo_high == max([pooled.high, *(p.high for p in subsets)])
    args = {"threshold": 0.0, "direction": "below"}
    assert verdict(pooled.estimate, pooled.low, pooled.high, **args) == "holds"
    entry = _entry("C5", "t1/eer change", pooled, 0.0, "below", "")
    assert entry["verdict"] == "inconclusive"  # without fold 3 the interval straddles 0
    single = pooling.pool(_units({(0, 0): -0.06}, sd=0.003), identities=ids)
    assert math.isnan(single.loo_low) and math.isnan(single.loo_high)
    assert _entry("C5", "m", single, 0.0, "below", "")["verdict"] == "holds"


def test_differences_pair_the_training_runs_both_sides_have():
    a = _units({(0, 0): 0.3, (0, 1): 0.5, (1, 0): 0.2})
    b = _units({(0, 0): 0.1, (1, 0): 0.1}, seed=1)
    d = (a - b).values
    assert set(d) == {(0, 0), (1, 0)}
    assert d[(0, 0)][0] == pytest.approx(0.2)
    np.testing.assert_allclose(d[(1, 0)][1], a.values[(1, 0)][1] - b.values[(1, 0)][1])


def test_the_expanded_interval_widens_the_percentile_one_by_the_small_sample_factor():
    reps = np.random.default_rng(0).normal(0.0, 1.0, 100_000)
    low, high = pooling.expanded_interval(reps, 0.0, n=10)
    plain = np.quantile(reps, [0.025, 0.975])
    # sqrt(10/9) on the deviations, then Hesterberg's quantile: sqrt(10/9) x t(9) for the normal
    expected = (10 / 9) * 2.262 / 1.960
    assert (high - low) / (plain[1] - plain[0]) == pytest.approx(expected, rel=0.02)
    assert pooling.expanded_interval(reps, 0.0, n=1) == (pytest.approx(math.nan, nan_ok=True),) * 2


def _run(key: str, fold: int, seed: int) -> PruneRun:
    history = pd.DataFrame({"step": [0], "stage": ["original"]})
    summary = {"fold": fold, "seed": seed}
    return PruneRun(key, "squeezenet", "taylor_activation", history, summary, label="taylor")


def _scores(ids: list[str]) -> RunScores:
    return RunScores(None, ids, pd.DataFrame(), {}, {})


def test_fold_resamples_are_stratified_and_refuse_folds_that_share_identities():
    units = {"a": (0, 0), "b": (0, 1), "c": (1, 0)}
    scores = {"a": _scores(IDS[:10]), "b": _scores(IDS[:10]), "c": _scores(IDS[10:15])}
    counts = pooling.fold_counts(scores, units, n_resamples=50)
    assert counts[0].shape == (50, 10) and counts[1].shape == (50, 5)
    assert (counts[1].sum(axis=1) == 5).all()  # each fold resampled within itself
    with pytest.raises(DataError, match="share 1 test identities"):
        pooling.fold_counts({**scores, "c": _scores(IDS[9:14])}, units)
    with pytest.raises(DataError, match="both fold 0 but test other identities"):
        pooling.fold_counts({**scores, "b": _scores(IDS[1:11])}, units)


def test_replicates_join_their_run_and_may_not_repeat_a_training_run():
    runs = {"main": _run("main", 0, 0)}
    groups = pooling.replicate_groups(runs, {"f1": _run("f1", 1, 0), "s1": _run("s1", 0, 1)})
    assert groups == {"main": ["f1", "s1"]}
    with pytest.raises(DataError, match="a training run 'main' already has"):
        pooling.replicate_groups(runs, {"again": _run("again", 0, 0)})


@pytest.mark.parametrize(("identities", "folds"), [(10, 1), (40, 4)])
def test_the_pooled_interval_covers_the_population_eer_better_than_the_percentile_one(
    identities, folds
):
    truth = cv.population_eer(identities=200, sets=4)
    result = cv.interval_coverage(
        identities=identities, folds=folds, sets=150, resamples=500, images=6, truth=truth
    )
    assert result.pooled >= 0.9
    assert result.pooled > result.percentile
    assert result.pooled_width > result.percentile_width


def test_the_eer_by_bisection_equals_the_full_rate_tables():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(8), 6)
    a, b = np.triu_indices(ids.size, 1)
    ia, ib = ids[a], ids[b]
    scores = np.round(rng.normal(size=a.size) + 1.5 * (ia == ib), 1)  # many ties
    counts = st.identity_bootstrap(8, 500, seed=2)
    counts[0] = 0  # a resample without any identity: NaN both ways
    counts[1] = 0
    counts[1, 3] = 8  # one identity only: no impostor pair, NaN both ways
    w, groups = st.pair_group_weights(counts, ia, ib, ia == ib)
    full = st._eer_rows(*st._rates(scores, ia == ib, w, groups))
    fast = st.weighted_eer(scores, ia == ib, w, groups=groups)
    np.testing.assert_allclose(fast, full, rtol=0, atol=1e-12)
    assert np.isnan(fast[:2]).all() and np.isnan(full[:2]).all()
