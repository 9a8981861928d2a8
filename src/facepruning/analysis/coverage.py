"""Do the intervals mean what they say? Their coverage on simulated verification sets.

A 95% interval should contain the true value in 95% of data sets. For an EER over a few test
identities nothing guarantees that, so it is measured: :func:`simulate_scores` draws
identity-clustered comparison scores (every identity has its own genuine-score offset and its own
impostor look-alike offset, so comparisons of one identity move together, as real ones do), the
population EER of the same model is computed once on a very large set, and
:func:`interval_coverage` counts how often the interval of :mod:`.pooling` (and, for comparison,
the plain percentile interval) over ``identities`` test identities in ``folds`` folds contains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import statistics as st
from .pooling import Units, pool

__all__ = ["simulate_scores", "population_eer", "interval_coverage", "Coverage"]


def simulate_scores(
    rng: np.random.Generator,
    identities: int,
    images: int = 10,
    *,
    separation: float = 2.0,
    genuine_sd: float = 0.8,
    lookalike_sd: float = 0.5,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All-pairs scores of ``identities`` x ``images`` faces: ``(scores, pairs)`` with ``pairs``
    as :func:`statistics.bootstrap_metric` takes them. Genuine pairs of identity i score
    ``separation + u_i + noise``, impostor pairs of i and j ``(v_i + v_j) / 2 + noise``, with
    identity effects ``u ~ N(0, genuine_sd)``, ``v ~ N(0, lookalike_sd)`` and unit noise."""
    ids = np.repeat(np.arange(identities), images)
    a, b = np.triu_indices(ids.size, 1)
    ia, ib = ids[a], ids[b]
    genuine = ia == ib
    u = rng.normal(0.0, genuine_sd, identities)
    v = rng.normal(0.0, lookalike_sd, identities)
    mean = np.where(genuine, separation + u[ia], 0.5 * (v[ia] + v[ib]))
    return mean + rng.normal(0.0, 1.0, a.size), {"a": ia, "b": ib, "genuine": genuine}


def _eer(scores: np.ndarray, pairs: dict[str, np.ndarray]) -> float:
    return float(st.weighted_eer(scores, pairs["genuine"], np.ones((1, scores.size)))[0])


def population_eer(seed: int = 0, identities: int = 300, sets: int = 8) -> float:
    """The simulated model's EER on ``sets`` sets of ``identities`` identities (the mean: close to
    the population value, 0.19 for the defaults)."""
    rng = np.random.default_rng([seed, 1])
    return float(np.mean([_eer(*simulate_scores(rng, identities)) for _ in range(sets)]))


@dataclass(frozen=True)
class Coverage:
    """How often intervals contained the population EER: ``pooled`` (:func:`.pooling.pool`, the
    intervals of the claims) and ``percentile`` (plain percentile of the same resamples), over
    ``sets`` simulated test sets of ``identities`` identities in ``folds`` folds, each with
    ``resamples`` bootstrap resamples; and the mean widths."""

    identities: int
    folds: int
    sets: int
    resamples: int
    pooled: float
    percentile: float
    pooled_width: float
    percentile_width: float

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def interval_coverage(
    *,
    identities: int = 10,
    folds: int = 1,
    sets: int = 200,
    resamples: int = 1000,
    images: int = 10,
    level: float = 0.95,
    truth: float | None = None,
    seed: int = 0,
) -> Coverage:
    """Coverage of the population EER (``truth``, default :func:`population_eer`) by the pooled
    interval and by the plain percentile interval, on ``sets`` simulated sets of ``identities``
    test identities split into ``folds`` equal folds (one network per fold, so the pooled
    estimate is the mean of the folds' EERs, as in the claims)."""
    truth = population_eer(seed) if truth is None else truth
    rng = np.random.default_rng([seed, 2])
    per = identities // folds
    hits = {"pooled": 0, "percentile": 0}
    widths = {"pooled": 0.0, "percentile": 0.0}
    for k in range(sets):
        values = {}
        for f in range(folds):
            s, pairs = simulate_scores(rng, per, images)
            counts = st.identity_bootstrap(per, resamples, seed=[seed, k, f])
            values[(f, 0)] = (_eer(s, pairs), st.bootstrap_metric(s, pairs, counts, "eer"))
        pooled = pool(Units(values), identities=dict.fromkeys(range(folds), per), level=level)
        reps = np.mean([r for _, r in values.values()], axis=0)
        low, high = st.percentile_interval(reps, level)
        bounds = {"pooled": (pooled.low, pooled.high), "percentile": (low, high)}
        for name, (lo, hi) in bounds.items():
            hits[name] += lo <= truth <= hi
            widths[name] += (hi - lo) / sets
    return Coverage(
        identities=per * folds,
        folds=folds,
        sets=sets,
        resamples=resamples,
        pooled=hits["pooled"] / sets,
        percentile=hits["percentile"] / sets,
        pooled_width=widths["pooled"],
        percentile_width=widths["percentile"],
    )
