"""Pooling replicate training runs: every fold's identities, and the noise of training itself.

One pruning run answers a claim for one trained network and one group of test identities. Its
*replicates* repeat it (same network, criterion and schedule) on another *fold* (another disjoint
group of test identities, the network trained on the rest) or with another *seed* (same fold,
trained again). A claim's quantity (say, EER after pruning minus before) is measured on each
training run, its *unit* ``(fold, seed)``, and pooled:

- the estimate is the mean over folds of each fold's mean over its seeds, so every test identity
  counts once;
- its identity part resamples the identities within each fold (a stratified bootstrap: one
  resample of every fold's identities per replicate, shared by all runs of that fold, so
  differences between runs of a fold stay paired);
- its training part adds, to every replicate, run-to-run deviations drawn from the folds that were
  trained more than once (each seed's value minus its fold's mean, scaled by ``sqrt(S/(S-1))``),
  one per training run of each fold, as :func:`pool` describes; where no fold was trained twice
  the training noise is not measured, and :class:`Pooled` says so;
- the interval is an *expanded* percentile interval of the sum: the deviations from the estimate
  are first widened by ``sqrt(n/(n-1))`` (the bootstrap's variance is ``(n-1)/n`` of the truth
  for ``n`` identities per fold), then the percentiles are moved as in Hesterberg's expanded
  percentile interval (2015, "What teachers should know about the bootstrap", section 4.3), to
  ``Phi(sqrt(n/(n-1)) t_{N-F})`` for ``N`` identities in ``F`` folds. Both corrections widen
  the plain percentile interval, which covers the population EER clearly less often than its
  level says on simulated sets of 10 identities; :mod:`facepruning.analysis.coverage` measures
  how close this one comes (notebook 04 and ``analysis.json`` report it). An EER over few
  identities is also biased upwards, which no widening removes; differences between two rows of
  one run, what most claims test, share most of that bias;
- the run-to-run deviations come from few seeds, so one training run can still carry a verdict:
  where a quantity pools several training runs, the same pooled interval is recomputed without
  each of them in turn, and the *envelope* of those intervals and the full one (``loo_low``,
  ``loo_high``) is what a verdict must clear (:func:`facepruning.analysis.claims.verdict`), so
  that no verdict rests on one of them. The envelope is a robustness rule on top of the 95%
  interval, stricter than it and of no stated level; leaving out a fold's only run also drops
  that fold's identities, which widens the interval by itself. A quantity measured on one
  training run has nothing to leave out, and its interval holds no training noise.

- :class:`Units`: one quantity per training run, with its identity-bootstrap replicates;
  arithmetic between quantities pairs the units;
- :func:`pool` (:class:`Pooled`): the pooled estimate and interval, how much of the interval
  comes from identities and how much from training runs, and the leave-one-run-out envelope;
- :func:`unit_of`, :func:`replicate_groups`, :func:`fold_counts`: which runs replicate which,
  and the stratified identity resamples.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

from .. import statistics as st
from ..errors import DataError
from .runs import PruneRun, RunScores

__all__ = [
    "INTERVAL_METHOD",
    "Units",
    "Pooled",
    "pool",
    "expanded_interval",
    "unit_of",
    "replicate_groups",
    "fold_counts",
]

#: What every interval of the claims is, in words (``analysis.json``'s ``interval_method``).
INTERVAL_METHOD = (
    "expanded percentile (Hesterberg 2015) of a bootstrap stratified by fold over test "
    "identities, plus run-to-run deviations measured between seeds"
)

Unit = tuple[int, int]  # (fold, seed)


def unit_of(run: PruneRun) -> Unit:
    """The training run a pruning run belongs to: ``(fold, seed)`` from its metrics JSON (runs
    written before folds existed are fold 0, seed 0)."""
    return int(run.summary.get("fold", 0)), int(run.summary.get("seed", 0))


def _same_setup(a: PruneRun, b: PruneRun) -> bool:
    return (a.arch, a.criterion, a.normalize_scores) == (b.arch, b.criterion, b.normalize_scores)


def replicate_groups(
    runs: Mapping[str, PruneRun], replicates: Mapping[str, PruneRun]
) -> dict[str, list[str]]:
    """For every run of ``runs`` that ``replicates`` repeat, the replicates' names: runs of the
    same network, criterion and normalisation on another training run (:func:`unit_of`). A
    replicate that repeats no run, or repeats a training run already there, raises DataError."""
    groups: dict[str, list[str]] = {}
    for rkey, rep in sorted(replicates.items()):
        matches = [k for k, r in runs.items() if _same_setup(r, rep)]
        if len(matches) != 1:
            raise DataError(
                f"replicate run {rkey!r} ({rep.arch}, {rep.label}) matches {len(matches)} runs "
                "of the main pipeline (need exactly one with its network and criterion): run "
                "the main run first, or remove the replicate from params.yaml"
            )
        siblings = groups.get(matches[0], [])
        taken = {unit_of(runs[matches[0]])} | {unit_of(replicates[k]) for k in siblings}
        if unit_of(rep) in taken:
            raise DataError(
                f"replicate run {rkey!r} is fold {unit_of(rep)[0]}, seed {unit_of(rep)[1]}, a "
                f"training run {matches[0]!r} already has: give each replicate its own fold or seed"
            )
        groups.setdefault(matches[0], []).append(rkey)
    return groups


def fold_counts(
    scores: Mapping[str, RunScores],
    units: Mapping[str, Unit],
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """The stratified identity resamples: for every fold, counts ``[n_resamples, identities]``
    of its test identities (:func:`statistics.identity_bootstrap`, seeded by ``seed`` and the
    fold). All runs of a fold must test the same identities, and no two folds may share one
    (DataError naming the runs otherwise)."""
    ids: dict[int, tuple[str, tuple[str, ...]]] = {}
    for key, rs in sorted(scores.items()):
        fold = units[key][0]
        mine = tuple(rs.identities)
        if fold in ids and ids[fold][1] != mine:
            raise DataError(
                f"runs {ids[fold][0]!r} and {key!r} are both fold {fold} but test other "
                "identities: rerun the older one's stages on the current prepared data"
            )
        ids.setdefault(fold, (key, mine))
    folds = sorted(ids)
    for i, f in enumerate(folds):
        for g in folds[i + 1 :]:
            shared = set(ids[f][1]) & set(ids[g][1])
            if shared:
                raise DataError(
                    f"folds {f} and {g} share {len(shared)} test identities (e.g. "
                    f"{sorted(shared)[0]}): prepare every fold with the same seed and "
                    "test_identities"
                )
    return {
        f: st.identity_bootstrap(len(ids[f][1]), n_resamples, seed=[seed, f])  # type: ignore[arg-type]
        for f in folds
    }


@dataclass(frozen=True)
class Units:
    """One quantity measured on several training runs: ``{(fold, seed): (estimate, replicates)}``,
    the replicates over that fold's identity resamples. ``a - b``, ``a + b`` keep the units both
    have (paired: the same resamples); ``a * x`` scales by a number."""

    values: Mapping[Unit, tuple[float, np.ndarray]]

    def _join(self, other: Units, sign: float) -> Units:
        common = sorted(set(self.values) & set(other.values))
        return Units(
            {
                u: (
                    self.values[u][0] + sign * other.values[u][0],
                    self.values[u][1] + sign * other.values[u][1],
                )
                for u in common
            }
        )

    def __sub__(self, other: Units) -> Units:
        return self._join(other, -1.0)

    def __add__(self, other: Units) -> Units:
        return self._join(other, 1.0)

    def __mul__(self, factor: float) -> Units:
        return Units({u: (e * factor, r * factor) for u, (e, r) in self.values.items()})


@dataclass(frozen=True)
class Pooled(st.Interval):
    """A pooled estimate with its interval, and where the interval comes from: ``identities``
    tested (over ``folds``), ``training_runs``, the interval from identities alone
    (``identity_low``, ``identity_high``), the standard deviation the training runs add
    (``run_sd``; NaN when no fold was trained twice) and their share of the variance;
    ``loo_low``, ``loo_high``: the envelope of this interval and those without each training run
    in turn (module docstring; NaN with a single training run)."""

    identities: int = 0
    folds: int = 0
    training_runs: int = 0
    identity_low: float = math.nan
    identity_high: float = math.nan
    run_sd: float = math.nan
    run_share: float = math.nan
    loo_low: float = math.nan
    loo_high: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def expanded_interval(
    replicates: np.ndarray, estimate: float, *, n: int, strata: int = 1, level: float = 0.95
) -> tuple[float, float]:
    """The expanded percentile interval (module docstring) of bootstrap ``replicates`` around
    ``estimate``, for ``n`` identities in ``strata`` equal folds; ``(nan, nan)`` without finite
    replicates or with a single identity per fold."""
    r = np.asarray(replicates, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    per = n / max(strata, 1)
    if r.size == 0 or per <= 1 or not math.isfinite(estimate):
        return math.nan, math.nan
    widen = math.sqrt(per / (per - 1))
    tail = sps.norm.cdf(widen * sps.t.ppf((1 - level) / 2, max(n - strata, 1)))
    wide = estimate + (r - estimate) * widen
    low, high = np.quantile(wide, [tail, 1 - tail])
    return float(low), float(high)


def _run_deviations(units: Mapping[Unit, tuple[float, np.ndarray]]) -> np.ndarray:
    """Each seed's value minus its fold's mean, scaled by sqrt(S/(S-1)), over the folds trained
    S >= 2 times: draws of one training run's deviation from its fold's expected value."""
    by_fold: dict[int, list[float]] = {}
    for (fold, _), (est, _) in units.items():
        by_fold.setdefault(fold, []).append(est)
    out = []
    for values in by_fold.values():
        if len(values) >= 2:
            v = np.asarray(values)
            out.extend((v - v.mean()) * math.sqrt(len(v) / (len(v) - 1)))
    return np.asarray(out, dtype=np.float64)


def pool(
    units: Units,
    *,
    identities: Mapping[int, int],
    level: float = 0.95,
    seed: int = 0,
) -> Pooled:
    """The pooled estimate of ``units`` and its interval (module docstring); ``identities``:
    test identities per fold. Training noise enters every bootstrap replicate as, per fold, the
    mean of as many deviations (:func:`_run_deviations`, drawn with replacement, seeded by
    ``seed``) as the fold has training runs, averaged over folds like the estimate. With two or
    more training runs, ``loo_low`` and ``loo_high`` bound this interval and every interval
    pooled the same way without one of them (a fold whose only run is left out drops out with
    its identities)."""
    full = _pool_once(units, identities=identities, level=level, seed=seed)
    if len(units.values) < 2:
        return full
    lows, highs = [full.low], [full.high]
    for left_out in units.values:
        rest = Units({u: v for u, v in units.values.items() if u != left_out})
        part = _pool_once(rest, identities=identities, level=level, seed=seed)
        lows.append(part.low)
        highs.append(part.high)
    # a NaN end (too few identities left) leaves the envelope unbounded on that side
    low = min(lows) if all(map(math.isfinite, lows)) else -math.inf
    high = max(highs) if all(map(math.isfinite, highs)) else math.inf
    return replace(full, loo_low=low, loo_high=high)


def _pool_once(units: Units, *, identities: Mapping[int, int], level: float, seed: int) -> Pooled:
    """:func:`pool` without the leave-one-run-out envelope."""
    values = units.values
    if not values:
        nan = math.nan
        return Pooled(nan, nan, nan)
    folds = sorted({f for f, _ in values})
    per_fold = {f: [u for u in values if u[0] == f] for f in folds}
    estimate = float(np.mean([np.mean([values[u][0] for u in per_fold[f]]) for f in folds]))
    reps = np.mean([np.mean([values[u][1] for u in per_fold[f]], axis=0) for f in folds], axis=0)
    n = sum(identities[f] for f in folds)
    id_low, id_high = expanded_interval(reps, estimate, n=n, strata=len(folds), level=level)
    deviations = _run_deviations(values)
    noise = np.zeros_like(reps)
    if deviations.size:
        rng = np.random.default_rng(seed)
        draws = [rng.choice(deviations, size=(reps.size, len(per_fold[f]))) for f in folds]
        noise = np.mean([d.mean(axis=1) for d in draws], axis=0)
    low, high = expanded_interval(reps + noise, estimate, n=n, strata=len(folds), level=level)
    run_var = float(np.var(noise)) if deviations.size else math.nan
    total = float(np.var(reps[np.isfinite(reps)])) + (run_var if deviations.size else 0.0)
    return Pooled(
        estimate,
        low,
        high,
        identities=n,
        folds=len(folds),
        training_runs=len(values),
        identity_low=id_low,
        identity_high=id_high,
        run_sd=math.sqrt(run_var) if deviations.size else math.nan,
        run_share=run_var / total if deviations.size and total > 0 else math.nan,
    )
