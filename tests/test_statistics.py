"""Tests of facepruning.statistics: weighted metrics against sklearn and verification, the identity
bootstrap, paired intervals and the random-removal null of the width correlation."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_curve

from facepruning import statistics as st
from facepruning import verification


def _pairs(n_ids=10, per_id=6, offset_sd=0.0, sep=1.5, seed=0, rounding=None):
    """All pairs of ``n_ids`` x ``per_id`` images; each identity shifts all its scores."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), per_id)
    i, j = np.triu_indices(ids.size, 1)
    a, b = ids[i], ids[j]
    g = a == b
    offset = rng.normal(0, offset_sd, n_ids)
    s = rng.normal(size=a.size) + sep * g + offset[a] + offset[b]
    if rounding is not None:
        s = np.round(s, rounding)  # ties
    return s, {"a": a, "b": b, "genuine": g}


def _sk_eer(s, g, w):
    fpr, tpr, _ = roc_curve(g, s, sample_weight=w, drop_intermediate=False)
    fpr, tpr = np.r_[0.0, fpr], np.r_[0.0, tpr]  # sklearn may drop the (0, 0) start
    d = fpr + tpr - 1
    k = int(np.argmax(d >= 0))
    if d[k] == 0:
        return fpr[k]
    t = -d[k - 1] / (d[k] - d[k - 1])
    return fpr[k - 1] + t * (fpr[k] - fpr[k - 1])


def _sk_tar(s, g, w, far):
    fpr, tpr, _ = roc_curve(g, s, sample_weight=w, drop_intermediate=False)
    ok = fpr <= far * (1 + 1e-12)
    return tpr[ok].max() if ok.any() else 0.0


@pytest.mark.parametrize("rounding", [None, 1])
def test_weighted_metrics_match_sklearn_with_random_weights(rounding):
    s, p = _pairs(rounding=rounding, seed=1)
    g = p["genuine"]
    w = np.random.default_rng(2).exponential(size=(5, s.size))
    w[:, ::7] = 0.0  # zero weights drop pairs
    eers = st.weighted_eer(s, g, w)
    tars = st.weighted_tar_at_far(s, g, w, 0.05)
    for b in range(len(w)):
        assert eers[b] == pytest.approx(_sk_eer(s, g, w[b]), abs=1e-9)
        assert tars[b] == pytest.approx(_sk_tar(s, g, w[b], 0.05), abs=1e-9)


@pytest.mark.parametrize("rounding", [None, 1, 0])
def test_unit_weights_equal_verification_exactly(rounding):
    s, p = _pairs(rounding=rounding, seed=3)
    g = p["genuine"]
    ones = np.ones(s.size)
    assert st.weighted_eer(s, g, ones)[0] == verification.eer(s, g)
    for far in (0.001, 0.01, 0.1):
        assert st.weighted_tar_at_far(s, g, ones, far)[0] == verification.tar_at_far(s, g, far)
    assert np.isnan(st.weighted_tar_at_far(s[:50], g[:50], ones[:50], 0.001)[0])
    assert verification.tar_at_far(s[:50], g[:50], 0.001) is None


def test_grouped_weights_equal_expanded_weights():
    s, p = _pairs(rounding=1, seed=4)
    counts = st.identity_bootstrap(10, 50, seed=1)
    full = st.pair_weights(counts, p["a"], p["b"], p["genuine"])
    w, groups = st.pair_group_weights(counts, p["a"], p["b"], p["genuine"])
    np.testing.assert_array_equal(w[:, groups], full)
    for name in ("eer", "tar@far=0.01"):
        fn = st.metric_function(name)
        np.testing.assert_array_equal(
            fn(s, p["genuine"], w, groups=groups), fn(s, p["genuine"], full)
        )


def test_pair_weights_by_hand():
    counts = np.array([[2, 0, 1], [1, 1, 1]])
    a, b = np.array([0, 0, 1, 0, 2]), np.array([0, 1, 2, 2, 2])
    g = a == b
    np.testing.assert_array_equal(
        st.pair_weights(counts, a, b, g), [[2, 0, 0, 2, 1], [1, 1, 1, 1, 1]]
    )
    with pytest.raises(Exception, match="genuine"):
        st.pair_weights(counts, a, b, ~g)


def test_identity_bootstrap_counts():
    c = st.identity_bootstrap(10, 500, seed=5)
    assert c.shape == (500, 10) and (c.sum(axis=1) == 10).all() and (c >= 0).all()
    np.testing.assert_array_equal(c, st.identity_bootstrap(10, 500, seed=5))
    assert not np.array_equal(c, st.identity_bootstrap(10, 500, seed=6))
    assert abs(c.mean() - 1.0) < 0.05


def test_identity_interval_covers_truth_and_is_wider_than_a_pair_bootstrap():
    # Each identity shifts its scores: pairs of one identity move together.
    s, p = _pairs(n_ids=10, per_id=8, offset_sd=0.5, sep=1.5, seed=7)
    g = p["genuine"]
    big_s, big_p = _pairs(n_ids=400, per_id=4, offset_sd=0.5, sep=1.5, seed=8)
    truth = verification.eer(big_s, big_p["genuine"])  # the population EER, approximately
    counts = st.identity_bootstrap(10, 1000, seed=0)
    low, high = st.percentile_interval(st.bootstrap_metric(s, p, counts, "eer"))
    assert low < truth < high
    rng = np.random.default_rng(0)
    idx = rng.integers(0, s.size, (1000, s.size))
    w = np.stack([np.bincount(row, minlength=s.size) for row in idx]).astype(float)
    nlow, nhigh = st.percentile_interval(st.weighted_eer(s, g, w))
    assert (high - low) > 1.5 * (nhigh - nlow)


def test_bootstrap_is_fast():
    s, p = _pairs(n_ids=10, per_id=10, seed=9)  # 4950 pairs
    counts = st.identity_bootstrap(10, 1000)
    t = time.perf_counter()
    st.bootstrap_metric(s, p, counts, "eer")
    assert time.perf_counter() - t < 1.0


def test_paired_difference_of_a_run_with_itself_is_exactly_zero():
    s, p = _pairs(seed=10)
    counts = st.identity_bootstrap(10, 200)
    r = st.bootstrap_metric(s, p, counts, "eer")
    iv = st.paired_difference(r, r, estimate=0.0)
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_percentile_interval():
    assert st.percentile_interval(np.arange(1001.0)) == pytest.approx((25.0, 975.0))
    assert st.percentile_interval([np.nan, 1.0, 1.0]) == (1.0, 1.0)
    assert np.isnan(st.percentile_interval([np.nan])[0])


def test_width_rank_correlation_is_spearmans_rho_and_nan_on_equal_shares():
    start = np.array([16, 32, 64, 64, 128, 8])
    end = np.array([16, 24, 40, 48, 64, 4])
    share = 1 - end / start  # with ties on both sides
    by_hand = np.corrcoef(stats.rankdata(start), stats.rankdata(share))[0, 1]  # average ranks
    assert st.width_rank_correlation(start, end) == pytest.approx(by_hand, abs=1e-12)
    assert st.width_rank_correlation(start, end) == st.spearman(start, share)
    assert np.isnan(st.width_rank_correlation([16, 32, 64], [8, 16, 32]))  # equal shares
    assert np.isnan(st.width_rank_correlation([32, 32, 32], [8, 16, 32]))  # equal widths
    assert np.isnan(st.width_rank_correlation([32], [8]))
    with pytest.raises(ValueError, match="width_rank_correlation needs"):
        st.width_rank_correlation([16, 32], [8])


def _spearman_rows(w, removed):
    return np.array([stats.spearmanr(w, r / w).statistic for r in removed])


def test_width_null_matches_scipy_spearman():
    w = np.array([16, 16, 64, 64, 128, 32, 48, 256])
    null = st.width_null(w, 200, n=50, seed=3)
    rng = np.random.default_rng(3)
    removed = rng.multivariate_hypergeometric(w - 1, 200, size=50)
    np.testing.assert_allclose(null, _spearman_rows(w, removed), atol=1e-12)
    assert np.isnan(st.width_null(w, 0, n=5)).all()  # nothing removed: constant shares


def _uniform_removal(w, total, rng, min_channels=1):
    channels = np.repeat(np.arange(w.size), w - min_channels)
    chosen = rng.choice(channels.size, total, replace=False)
    return np.bincount(channels[chosen], minlength=w.size)


def test_width_null_covers_uniform_removal_about_95_percent():
    w = np.array([8, 16, 16, 24, 32, 48, 64, 64, 96, 128, 128, 256])
    total = 300
    pos = st.null_position(0.0, st.width_null(w, total, n=4000, seed=0))
    rng = np.random.default_rng(11)
    rhos = [stats.spearmanr(w, _uniform_removal(w, total, rng) / w).statistic for _ in range(400)]
    inside = np.mean([pos["low"] <= r <= pos["high"] for r in rhos])
    assert 0.9 <= inside <= 0.99


@pytest.mark.parametrize("multiple", [1, 8])
def test_the_normalised_null_is_the_loops_selection_of_normalised_random_scores(multiple):
    """width_null(normalised=True) against the loop itself: uniform scores, normalise_per_group,
    select_channels, three steps; the two distributions of rho agree (means and quantiles), and
    both sit far above the uniform null (the normalisation favours wide groups by itself)."""
    import torch

    from facepruning.pruning.loop import select_channels
    from facepruning.pruning.scoring import normalize_per_group

    w = np.array([12, 16, 32, 64, 24, 48, 96, 128])
    steps = [30, 30, 30]
    null = st.width_null(w, 90, steps=steps, channel_multiple=multiple, n=3000, normalised=True)
    generator = torch.Generator().manual_seed(0)
    loop = []
    for _ in range(600):
        left = {str(g): int(c) for g, c in enumerate(w)}
        for count in steps:
            scores = {g: torch.rand(c, generator=generator, dtype=torch.float64)
                      for g, c in left.items()}  # fmt: skip
            plan = select_channels(
                normalize_per_group(scores), count=count, channel_multiple=multiple
            )
            for g, idx in plan.items():
                left[g] -= len(idx)
        loop.append(st.width_rank_correlation(w, list(left.values())))
    loop = np.asarray(loop)
    assert abs(np.nanmean(null) - np.nanmean(loop)) < 0.03
    for q in (10, 50, 90):
        assert abs(np.nanpercentile(null, q) - np.nanpercentile(loop, q)) < 0.06
    uniform = st.width_null(w, 90, steps=steps, channel_multiple=multiple, n=3000)
    assert np.nanmedian(null) > np.nanmedian(uniform) + 0.25


def test_width_null_flags_removal_favouring_wide_groups():
    w = np.array([8, 16, 16, 24, 32, 48, 64, 64, 96, 128, 128, 256])
    removed = np.floor((w - 1) * np.clip((w - 8) / 200, 0, 0.95)).astype(int)  # wide lose most
    rho = stats.spearmanr(w, removed / w).statistic
    pos = st.null_position(rho, st.width_null(w, int(removed.sum()), n=4000))
    assert rho > pos["high"] and pos["p"] < 0.05
    low = st.null_position(-rho, st.width_null(w, int(removed.sum()), n=4000))
    assert -rho < low["low"]
