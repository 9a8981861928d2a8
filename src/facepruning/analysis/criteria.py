"""The pruning criteria compared on one network at matched shares of filters removed.

:func:`criteria_comparison`: every run's metric (and each of its bootstrap replicates)
interpolated at the reference run's shares, averaged, and each run's mean minus the reference's,
paired on the same identity resamples. Runs are told apart by their display label
(:attr:`PruneRun.label`, written by the prune stage).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .intervals import _check_same_pairs, _ci, _difference, _Replicates, finite_or_none
from .pooling import expanded_interval
from .runs import CONTROL_CRITERION, MAIN_CRITERION, PruneRun
from .selection import _chain, interpolate_at

__all__ = [
    "criteria_comparison",
]


def _matched_grid(mine: Mapping[str, PruneRun], ref_run: PruneRun, stage: str) -> np.ndarray:
    """The reference run's shares of ``stage`` up to the smallest largest share of all runs."""
    top = min(r.history["filters_removed_pct"].max() for r in mine.values())
    h = ref_run.history
    shares = h.loc[h["stage"] == stage, "filters_removed_pct"].unique()
    return np.array(sorted(p for p in shares if p <= top + 1e-6))


def _curve_at(run: PruneRun, reps: _Replicates, grid, metric: str, stage: str):
    """``(estimates, replicates [grid, B] or None)`` of ``metric`` interpolated at ``grid``."""
    est = interpolate_at(run.history, metric, grid, stage=stage)
    if not reps.has(run.key, metric):
        return est, None
    rows = _chain(run.history, ["original", stage])
    rows = rows.sort_values("filters_removed_pct", kind="mergesort")
    xs = rows["filters_removed_pct"].to_numpy(float)
    r = np.stack(
        [
            reps.get(run.key, (int(s), str(g)), metric)[1]
            for s, g in zip(rows["step"], rows["stage"], strict=True)
        ]
    )  # [rows, B]
    return est, np.stack([np.interp(grid, xs, r[:, b]) for b in range(r.shape[1])], axis=1)


def _share_rows(variant: str, run: PruneRun, grid, est, rep, n: int, level: float) -> list[dict]:
    rows = []
    for k, (p, e) in enumerate(zip(grid, est, strict=True)):
        low, high = (
            expanded_interval(rep[k], e, n=n, level=level) if rep is not None else (np.nan,) * 2
        )
        row = {"variant": variant, "run": run.key, "share": f"{p:.4f}", "estimate": e}
        rows.append({**row, "low": low, "high": high})
    return rows


def _mean_against(variant, run, curve, ref, reps, metric, level) -> tuple[dict, list[dict]]:
    """A variant's mean over the shares, and (not for the reference) its paired difference."""
    (est, rep), (ref_variant, ref_run, ref_est, ref_rep) = curve, ref
    mean = float(np.mean(est))
    item = {"run": run.key, "mean": finite_or_none(mean)}
    mean_row = {"variant": variant, "run": run.key, "share": "mean", "estimate": mean}
    if rep is not None:
        n = reps.counts.shape[1]
        low_high = expanded_interval(rep.mean(axis=0), mean, n=n, level=level)
        mean_row.update(zip(("low", "high"), low_high, strict=True))
    rows = [mean_row]
    if variant != ref_variant and rep is not None and ref_rep is not None:
        _check_same_pairs(reps.scores[run.key], reps.scores[ref_run.key], metric.partition("/")[0])
        iv = _difference(
            rep.mean(axis=0),
            ref_rep.mean(axis=0),
            mean - float(np.mean(ref_est)),
            reps.counts.shape[1],
            level,
        )
        item["diff"], item["diff_ci"] = finite_or_none(iv.estimate), _ci(iv.low, iv.high)
        share = f"mean minus {ref_variant}"
        rows.append({"variant": variant, "run": run.key, "share": share, **iv.as_dict()})
    return item, rows


def criteria_comparison(
    runs: Mapping[str, PruneRun],
    reps: _Replicates,
    *,
    arch: str = "squeezenet",
    metric: str = "t1/eer",
    stage: str = "pruned",
    reference: str = MAIN_CRITERION,
    level: float = 0.95,
) -> tuple[dict, pd.DataFrame]:
    """The criteria on one network at matched shares of filters removed.

    The shares are the ``reference`` run's ``stage`` steps up to the smallest largest share of
    all runs; every run's ``metric`` (and each of its bootstrap replicates) is interpolated
    linearly there (:func:`interpolate_at`), then averaged. Returns ``({variant: {mean, diff,
    diff_ci}}, table)``: ``diff`` is the variant's mean minus the reference's, paired on the same
    identity resamples; the table has one line per variant and matched share (estimate, low,
    high) plus ``share = "mean"`` lines. Variants without scores get the mean only.
    """
    mine = {
        r.label: r for r in runs.values() if r.arch == arch and r.criterion != CONTROL_CRITERION
    }
    ref_run = next(
        (r for r in mine.values() if r.criterion == reference and r.normalize_scores), None
    )
    if len(mine) < 2 or ref_run is None:
        return {}, pd.DataFrame()
    grid = _matched_grid(mine, ref_run, stage)
    if grid.size == 0:
        return {}, pd.DataFrame()
    curves = {v: _curve_at(r, reps, grid, metric, stage) for v, r in sorted(mine.items())}
    table = [
        row
        for v, (est, rep) in curves.items()
        for row in _share_rows(v, mine[v], grid, est, rep, reps.counts.shape[1], level)
    ]
    ref = (ref_run.label, ref_run, *curves[ref_run.label])
    out = {}
    for variant, curve in curves.items():
        out[variant], rows = _mean_against(variant, mine[variant], curve, ref, reps, metric, level)
        table += rows
    summary = {"metric": metric, "stage": stage, "reference": ref_run.label}
    return {**summary, "shares": [float(p) for p in grid], "variants": out}, pd.DataFrame(table)
