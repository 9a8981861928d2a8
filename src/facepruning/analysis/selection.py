"""Selection along a pruning path: the smallest network still within a tolerance.

- :func:`smallest_within_tolerance`, :func:`largest_removal_within_tolerance`: the smallest
  network whose EER stays within a tolerance of the unpruned one;
  :func:`squeezerfacenet_pick`: that selection on SqueezeNet, made on the validation EER and
  measured on the test identities (the paper's SqueezerFaceNet);
- :func:`interpolate_at`: a metric at given shares of filters removed;
- :func:`squeezenet_classifier_params`, :func:`squeezenet_param_split`: parameter counts without
  the identity classifier, and as if it had the paper's 1000 outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import statistics as st
from ..errors import DataError
from .intervals import _ci, _Replicates, finite_or_none
from .runs import ORIGINAL, PruneRun

__all__ = [
    "smallest_within_tolerance",
    "largest_removal_within_tolerance",
    "interpolate_at",
    "squeezenet_classifier_params",
    "squeezenet_param_split",
    "squeezerfacenet_pick",
]


def _chain(history: pd.DataFrame, stages: Sequence[str]) -> pd.DataFrame:
    rows = history[history["stage"].isin(stages)]
    return rows.sort_values(["step", "params"], kind="mergesort")


def _baseline(history: pd.DataFrame, metric: str) -> float:
    original = history[history["stage"] == "original"]
    if original.empty or pd.isna(original[metric].iloc[0]):
        raise DataError(f"the history has no 'original' row with a value for {metric!r}")
    return float(original[metric].iloc[0])


def _passing_steps(
    history: pd.DataFrame, metric: str, tolerance: float, stages: Sequence[str], contiguous: bool
) -> pd.DataFrame:
    """Rows of ``stages`` within ``tolerance`` of the original (lower is better), at steps that
    qualify: with ``contiguous``, only steps before the first step where no row passes."""
    limit = _baseline(history, metric) + tolerance
    rows = _chain(history, stages)
    rows = rows[rows[metric].notna()]
    ok = rows[metric] <= limit + 1e-12
    if contiguous:
        step_ok = ok.groupby(rows["step"]).any().sort_index()
        bad = step_ok.index[~step_ok.to_numpy()]
        if len(bad):
            rows, ok = rows[rows["step"] < bad[0]], ok[rows["step"] < bad[0]]
    return rows[ok]


def smallest_within_tolerance(
    history: pd.DataFrame,
    metric: str,
    tolerance: float,
    *,
    stages: Sequence[str] = ("pruned", "finetuned", "final"),
    contiguous: bool = True,
) -> pd.Series | None:
    """The row with the fewest parameters whose ``metric`` (lower is better, e.g. an EER) is at
    most the original's plus ``tolerance``, among rows of ``stages``; None if no row qualifies.

    With ``contiguous`` the metric must *stay* within tolerance: a step counts only if, at every
    step up to it, at least one row of ``stages`` passed (a lucky late step after a failing one
    does not). Ties on parameters go to the lower metric.
    """
    rows = _passing_steps(history, metric, tolerance, stages, contiguous)
    if rows.empty:
        return None
    return rows.sort_values(["params", metric], kind="mergesort").iloc[0]


def largest_removal_within_tolerance(
    history: pd.DataFrame,
    metric: str,
    tolerance: float,
    *,
    stages: Sequence[str] = ("pruned",),
    contiguous: bool = True,
) -> float:
    """The largest ``filters_removed_pct`` up to which ``metric`` stays within ``tolerance`` of the
    original (0.0 when even the first step fails; see :func:`smallest_within_tolerance`)."""
    rows = _passing_steps(history, metric, tolerance, stages, contiguous)
    return float(rows["filters_removed_pct"].max()) if len(rows) else 0.0


def interpolate_at(
    history: pd.DataFrame,
    metric: str,
    pcts: Sequence[float],
    *,
    stage: str = "pruned",
    x: str = "filters_removed_pct",
) -> np.ndarray:
    """``metric`` linearly interpolated at each share in ``pcts`` along the ``stage`` rows (the
    original row counts as the 0 point); NaN outside the measured range (no extrapolation)."""
    rows = history[history["stage"].isin(["original", stage])]
    rows = rows[rows[metric].notna()].sort_values(x, kind="mergesort")
    pcts = np.asarray(pcts, dtype=float)
    if len(rows) == 0:
        return np.full(pcts.shape, np.nan)
    xs, ys = rows[x].to_numpy(dtype=float), rows[metric].to_numpy(dtype=float)
    out = np.interp(pcts, xs, ys)
    out[(pcts < xs.min() - 1e-9) | (pcts > xs.max() + 1e-9)] = np.nan
    return out


def squeezenet_classifier_params(in_channels: int | np.ndarray, num_classes: int):
    """Parameters of SqueezeNet's identity classifier: conv10 (1x1, bias) and its BatchNorm."""
    return num_classes * np.asarray(in_channels) + num_classes + 2 * num_classes


def squeezenet_param_split(
    history: pd.DataFrame,
    layers: pd.DataFrame,
    *,
    full_backbone_params: int,
    full_classifier_inputs: int = 512,
    paper_classes: int = 1000,
    classifier_input_groups: Sequence[str] = (
        "backbone.features.13.expand1x1",
        "backbone.features.13.expand3x3",
    ),
) -> pd.DataFrame:
    """Split each SqueezeNet history row's parameter count into backbone and classifier.

    The classifier's input width at each step is the width of the groups feeding conv10 (the last
    Fire module's two expand convs, from ``layers``). The number of identities follows from the
    original count: ``params = full_backbone_params + classifier(full_classifier_inputs, k)``.
    Adds ``num_classes``, ``classifier_inputs``, ``backbone_params`` and ``params_paper_classes``
    (backbone plus a ``paper_classes``-way classifier, the way the paper's 1.24M is counted).
    """
    original = history[history["stage"] == "original"]
    if original.empty:
        raise DataError("the history has no 'original' row")
    per_class = full_classifier_inputs + 3
    extra = int(original["params"].iloc[0]) - full_backbone_params
    if extra <= 0 or extra % per_class:
        raise DataError(
            f"{int(original['params'].iloc[0])} parameters minus the backbone's "
            f"{full_backbone_params} is not a whole SqueezeNet classifier ({per_class} per class)"
        )
    num_classes = extra // per_class
    missing = [g for g in classifier_input_groups if g not in layers.index]
    if missing:
        raise DataError(f"the layer table lacks the classifier's input groups {missing}")
    inputs = layers.loc[list(classifier_input_groups)].sum(axis=0)
    out = history.copy()
    out["num_classes"] = num_classes
    out["classifier_inputs"] = out["step"].map(inputs).astype(int)
    out["backbone_params"] = out["params"] - squeezenet_classifier_params(
        out["classifier_inputs"], num_classes
    )
    out["params_paper_classes"] = out["backbone_params"] + squeezenet_classifier_params(
        out["classifier_inputs"], paper_classes
    )
    return out


#: What the SqueezerFaceNet pick may be chosen on, in order of preference, and how to say it.
SELECTED_ON = {
    "val/t1/eer": "the validation images of the training identities, never the test identities",
    "t1/eer": "the test identities themselves (the history has no validation EER): optimistic",
}


def squeezerfacenet_pick(
    run: PruneRun,
    reps: _Replicates,
    tolerance: float,
    *,
    metric: str = "t1/eer",
    level: float = 0.95,
) -> dict | None:
    """The SqueezerFaceNet selection: :func:`smallest_within_tolerance` over every stage of the
    SqueezeNet run, chosen on the first metric of :data:`SELECTED_ON` the history holds (the
    validation EER: the test identities stay out of the choice), then measured on the test
    identities: its ``metric`` with its interval and its paired change from the original, and
    the share of parameters saved (None: no row qualifies)."""
    history = run.history
    select_on = next((m for m in SELECTED_ON if m in history and history[m].notna().all()), None)
    pick = smallest_within_tolerance(history, select_on, tolerance) if select_on else None
    if pick is None:
        return None
    at = (int(pick["step"]), str(pick["stage"]))
    p0 = float(history["params"].iloc[0])
    nan = st.Interval(float(pick[metric]), float("nan"), float("nan"))
    measured = reps.has(run.key, metric)
    iv = reps.interval(run.key, at, metric, level) if measured else nan
    change = reps.diff((run.key, at), (run.key, ORIGINAL), metric, level) if measured else nan
    if not measured:
        change = st.Interval(float(pick[metric] - history[metric].iloc[0]), nan.low, nan.high)
    return {
        "run": run.key,
        "step": at[0],
        "stage": at[1],
        "metric": metric,
        "selected_on": select_on,
        "selected_on_what": SELECTED_ON[select_on],
        "params": int(pick["params"]),
        "params_saved_pct": finite_or_none(100 * (1 - pick["params"] / p0)),
        "filters_removed_pct": finite_or_none(pick["filters_removed_pct"]),
        "eer": finite_or_none(iv.estimate),
        "eer_ci": _ci(iv.low, iv.high),
        "eer_change": finite_or_none(change.estimate),
        "eer_change_ci": _ci(change.low, change.high),
    }
