"""Identity-bootstrap intervals of the runs' metrics, and how the notebook writes them.

Every interval resamples the test *identities* (:mod:`facepruning.statistics`); differences
between rows or runs are computed on the same resamples (paired).

- :func:`counts_for`: the identity resamples every interval of one analysis uses;
- :func:`point_intervals`, :func:`paired_difference_at`: a run's metrics with their intervals,
  and paired differences between two rows;
- :func:`interval_table`: every history row of every run with scores, one line per metric
  (:data:`INTERVAL_METRICS`);
- :func:`eer_standard_error`: how precisely an EER is known from a number of comparisons;
- :func:`finite_or_none`, :func:`fmt_interval`, :func:`interval_side`: numbers for JSON and
  prose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import statistics as st
from .. import verification
from ..errors import DataError
from ..readings import finite_or_none, fmt_interval  # re-exported: the analysis's formatters
from .pooling import expanded_interval
from .runs import PruneRun, RunScores, check_scores, params_removed_pct

__all__ = [
    "INTERVAL_METRICS",
    "finite_or_none",
    "fmt_interval",
    "interval_side",
    "eer_standard_error",
    "point_intervals",
    "paired_difference_at",
    "counts_for",
    "interval_table",
]

#: The metrics every interval table holds (when measured), in display order.
INTERVAL_METRICS = ("t1/eer", "t5/eer", "t1/tar@far=0.01")


def _ci(low, high) -> list | None:
    low, high = finite_or_none(low), finite_or_none(high)
    return None if low is None or high is None else [low, high]


def interval_side(low, high, reference: float = 0.0) -> str:
    """Where an interval lies against ``reference``: ``"above"`` (entirely), ``"below"``
    (entirely) or ``"across"`` (touching or straddling it, or missing)."""
    if finite_or_none(low) is None or finite_or_none(high) is None:
        return "across"
    return "above" if low > reference else "below" if high < reference else "across"


def eer_standard_error(eer: float, n_genuine: int, n_impostor: int) -> float:
    """Approximate standard error of an EER estimated from independent comparisons.

    Near the crossing point the estimate moves by about the mean of the errors of its two rates,
    ``(dFRR + dFAR) / 2`` (when the two error curves cross with opposite slopes of equal size), so
    ``SE^2 ~ e(1-e)/4 * (1/n_genuine + 1/n_impostor)``. Comparisons that share images are not
    independent, so this is a lower bound for all-pairs protocols.
    """
    if not (0 <= eer <= 1) or n_genuine < 1 or n_impostor < 1:
        return float("nan")
    return math.sqrt(eer * (1 - eer) / 4 * (1 / n_genuine + 1 / n_impostor))


def _metric_values(
    run_scores: RunScores, row: int, metric: str, counts: np.ndarray
) -> tuple[float, np.ndarray]:
    """``metric`` (``"t1/eer"``, ``"t1/tar@far=0.01"``, ...) at ``row``: the estimate on all pairs
    (equal to :mod:`verification`'s) and its identity-bootstrap replicates over ``counts``."""
    block, _, name = metric.partition("/")
    if block not in run_scores.scores:
        raise DataError(f"{run_scores.path} has no scores for block {block!r} (metric {metric!r})")
    s, pairs = run_scores.scores[block][row], run_scores.pairs[block]
    fn = st.metric_function(name)
    estimate = float(fn(s, pairs["genuine"], np.ones((1, s.size)))[0])
    return estimate, st.bootstrap_metric(s, pairs, counts, fn)


def _rate_interval(reps, estimate: float, *, n: int, level: float) -> tuple[float, float]:
    """The expanded interval (:mod:`.pooling`) of a rate (EER, TAR), kept within [0, 1]: the
    widening can push it past the rate's range, where no value lies (differences of rates are
    not clipped)."""
    low, high = expanded_interval(reps, estimate, n=n, level=level)
    return max(low, 0.0), min(high, 1.0)  # NaN stays NaN: max/min keep a NaN first argument


def point_intervals(
    run_scores: RunScores, counts: np.ndarray, fars: Sequence[float] = (0.01,), level: float = 0.95
) -> pd.DataFrame:
    """For every row: EER (``t1``, and ``t5`` when present) and TAR at each of ``fars`` (``t1``)
    with its identity-bootstrap interval (expanded percentile, :mod:`.pooling`); columns step,
    stage, metric, estimate, low, high (one line per row and metric)."""
    metrics = [f"{b}/eer" for b in ("t1", "t5") if b in run_scores.scores]
    metrics += [f"t1/{verification.far_key(f)}" for f in fars if "t1" in run_scores.scores]
    out = []
    for r, (step, stage) in enumerate(run_scores.rows[["step", "stage"]].itertuples(index=False)):
        for metric in metrics:
            estimate, reps = _metric_values(run_scores, r, metric, counts)
            low, high = _rate_interval(reps, estimate, n=counts.shape[1], level=level)
            out.append((int(step), stage, metric, estimate, low, high))
    return pd.DataFrame(out, columns=["step", "stage", "metric", "estimate", "low", "high"])


def _check_same_pairs(x: RunScores, y: RunScores, block: str) -> None:
    px, py = x.pairs.get(block), y.pairs.get(block)
    same = x.identities == y.identities and px is not None and py is not None
    if not (same and all(np.array_equal(px[k], py[k]) for k in ("a", "b", "genuine"))):
        raise DataError(
            f"{x.path} and {y.path} do not hold the same {block} pairs (test images): paired "
            "comparisons need runs of the same prepared data; rerun the older prune stage"
        )


def _difference(ra, rb, estimate: float, n: int, level: float) -> st.Interval:
    """``a - b`` on the same resamples, with the expanded interval (:mod:`.pooling`)."""
    d = np.asarray(ra, dtype=np.float64) - np.asarray(rb, dtype=np.float64)
    return st.Interval(float(estimate), *expanded_interval(d, estimate, n=n, level=level))


def paired_difference_at(
    run_a_scores: RunScores,
    row_a: tuple[int, str],
    run_b_scores: RunScores,
    row_b: tuple[int, str],
    counts: np.ndarray,
    metric: str,
    level: float = 0.95,
) -> dict[str, float]:
    """``metric`` at row ``row_a`` = (step, stage) of run a minus at ``row_b`` of run b, on the
    same identity resamples: ``{estimate, low, high}`` (the expanded percentile interval)."""
    _check_same_pairs(run_a_scores, run_b_scores, metric.partition("/")[0])
    ea, ra = _metric_values(run_a_scores, run_a_scores.row(*row_a), metric, counts)
    eb, rb = _metric_values(run_b_scores, run_b_scores.row(*row_b), metric, counts)
    return _difference(ra, rb, ea - eb, counts.shape[1], level).as_dict()


def counts_for(scores: Mapping[str, RunScores], n_resamples: int = 1000, seed: int = 0):
    """The identity resamples every interval uses: :func:`statistics.identity_bootstrap` over the
    test identities of ``scores`` (all runs share one test set; DataError when they do not)."""
    ids = {tuple(rs.identities) for rs in scores.values()}
    if len(ids) != 1:
        raise DataError(
            f"the score files hold {len(ids)} different sets of test identities (need exactly "
            "one): rerun the prune stages of one prepared data set"
        )
    return st.identity_bootstrap(len(next(iter(ids))), n_resamples, seed)


class _Replicates:
    """Estimates and bootstrap replicates of (run, row, metric), each computed once."""

    def __init__(self, scores: Mapping[str, RunScores], counts: np.ndarray) -> None:
        self.scores, self.counts, self._cache = scores, counts, {}

    def has(self, key: str, metric: str) -> bool:
        return key in self.scores and metric.partition("/")[0] in self.scores[key].scores

    def get(self, key: str, row: tuple[int, str], metric: str) -> tuple[float, np.ndarray]:
        k = (key, row, metric)
        if k not in self._cache:
            rs = self.scores[key]
            self._cache[k] = _metric_values(rs, rs.row(*row), metric, self.counts)
        return self._cache[k]

    def interval(self, key: str, row: tuple[int, str], metric: str, level: float) -> st.Interval:
        estimate, reps = self.get(key, row, metric)
        n = self.counts.shape[1]
        return st.Interval(estimate, *_rate_interval(reps, estimate, n=n, level=level))

    def diff(self, a, b, metric: str, level: float) -> st.Interval:
        _check_same_pairs(self.scores[a[0]], self.scores[b[0]], metric.partition("/")[0])
        (ea, ra), (eb, rb) = self.get(*a, metric), self.get(*b, metric)
        return _difference(ra, rb, ea - eb, self.counts.shape[1], level)


def interval_table(
    runs: Mapping[str, PruneRun],
    scores: Mapping[str, RunScores],
    counts: np.ndarray,
    *,
    metrics: Sequence[str] = INTERVAL_METRICS,
    level: float = 0.95,
    _reps: _Replicates | None = None,
) -> pd.DataFrame:
    """Every history row of every run with scores, one line per metric: run, arch, criterion,
    variant, step, stage, filters_removed_pct, params, macs, descriptor_size,
    params_removed_pct (:func:`.runs.params_removed_pct`), metric, estimate, low, high (the
    identity-bootstrap interval; the estimate equals the history's value)."""
    reps = _reps or _Replicates(scores, counts)
    size_cols = ["filters_removed_pct", "params", "macs", "descriptor_size"]
    out = []
    for key, run in runs.items():
        if key not in scores:
            continue
        check_scores(run, scores[key])
        removed = params_removed_pct(run.history)
        for i, row in run.history.iterrows():
            at = (int(row["step"]), str(row["stage"]))
            sizes = {c: row.get(c, np.nan) for c in size_cols}
            sizes["params_removed_pct"] = removed[i]
            for metric in metrics:
                if not reps.has(key, metric):
                    continue
                iv = reps.interval(key, at, metric, level)
                out.append(
                    {
                        "run": key,
                        "arch": run.arch,
                        "criterion": run.criterion,
                        "variant": run.label,
                        "step": at[0],
                        "stage": at[1],
                        **sizes,
                        "metric": metric,
                        **iv.as_dict(),
                    }
                )
    return pd.DataFrame(out)
