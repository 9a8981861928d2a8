"""The curves behind the verdicts: every step's paired change, pooled like the claims.

A verdict on a claim reads one point of a curve; the figures show the whole curve with the same
kind of interval, so that a reader sees where the claim's point sits among its neighbours:

- :func:`change_curves`: at every step of each network's main run, a metric of the ``stage``
  row minus the original (what claims C1-C3 read) or minus the no-pruning control at the same
  step (what removing filters did, as C1/control reads it), paired on the same identity
  resamples and pooled over the run's training runs (folds and seeds, :mod:`.pooling`), so
  SqueezeNet's curves rest on all of its runs (:func:`facepruning.readings.change_reading` says,
  per network, where their intervals leave zero).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataError
from .claims import _Judge
from .pooling import replicate_groups
from .runs import (
    ORIGINAL,
    PruneRun,
    RunScores,
    control_runs,
    main_runs,
    params_removed_pct,
)

__all__ = ["change_curves"]


def change_curves(
    runs: Mapping[str, PruneRun],
    scores: Mapping[str, RunScores],
    *,
    counts: Mapping[int, np.ndarray],
    comparisons: Mapping[str, Sequence[str]],
    stage: str = "pruned",
    replicates: Mapping[str, PruneRun] | None = None,
    main: Mapping[str, str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """One line per comparison, network, step and metric: against, arch, run, step,
    filters_removed_pct, params_removed_pct (of the main run's history), metric, estimate, low,
    high, identities, training_runs. ``comparisons`` maps what is subtracted to the metrics
    compared: ``"original"`` (the ``stage`` row minus the unpruned network) and ``"control"``
    (minus the control's ``stage`` row at the same step; networks without a control are left
    out). ``counts`` are the stratified resamples of :func:`.pooling.fold_counts`; ``replicates``
    pool as in :func:`facepruning.analysis.judge_claims`, whose intervals these are at the
    claims' steps. Every run-row's replicates are computed once for all comparisons."""
    unknown = set(comparisons) - {"original", "control"}
    if unknown:
        raise DataError(
            f"comparisons {sorted(unknown)} unknown: compare against 'original' or 'control'"
        )
    main = dict(main_runs(runs) if main is None else main)
    controls = control_runs(runs)
    replicates = dict(replicates or {})
    groups = replicate_groups(runs, replicates)
    judge = _Judge(runs, scores, counts, 0.0, level, replicates, groups)
    out = []
    for against, metrics in comparisons.items():
        for arch, key in main.items():
            control = controls.get(arch)
            if key not in scores or (against == "control" and control not in scores):
                continue
            history = runs[key].history
            removed = params_removed_pct(history)
            for i, row in history[history["stage"] == stage].iterrows():
                at = (int(row["step"]), stage)
                if against == "control" and not _has_row(scores[control], at):
                    continue
                base = (key, ORIGINAL) if against == "original" else (control, at)
                for metric in metrics:
                    if metric.partition("/")[0] not in scores[key].scores:
                        continue
                    iv = judge.diff((key, at), base, metric)
                    out.append(
                        {
                            "against": against,
                            "arch": arch,
                            "run": key,
                            "step": at[0],
                            "filters_removed_pct": float(row["filters_removed_pct"]),
                            "params_removed_pct": float(removed[i]),
                            "metric": metric,
                            "estimate": iv.estimate,
                            "low": iv.low,
                            "high": iv.high,
                            "identities": iv.identities,
                            "training_runs": iv.training_runs,
                        }
                    )
    return pd.DataFrame(out)


def _has_row(run_scores: RunScores, at: tuple[int, str]) -> bool:
    rows = run_scores.rows
    return bool(((rows["step"] == at[0]) & (rows["stage"] == at[1])).any())
