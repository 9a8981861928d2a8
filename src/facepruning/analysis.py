"""Tables and statistics of the cross-run analysis (notebook 04): from metric files to numbers.

The training and pruning notebooks leave one set of files per run (``metrics/train/<arch>.json``,
``metrics/prune/<arch>-<criterion>.json``, ``..._history.csv``, ``..._layers.csv``). This module
gathers whatever runs exist into pandas tables and computes what the papers claim in words:

- :func:`load_prune_runs` / :func:`load_train_runs`: every run's files, one long history table;
- :func:`spearman`, :func:`permutation_pvalue`, :func:`width_order` / :func:`width_rank_summary`:
  do the widest layers lose filters first?
- :func:`smallest_within_tolerance`, :func:`largest_removal_within_tolerance`: the smallest network
  whose EER stays within a tolerance of the unpruned one (the SqueezerFaceNet selection);
- :func:`interpolate_at`: a metric at matched shares of filters removed (criterion comparison);
- :func:`squeezenet_classifier_params`, :func:`squeezenet_param_split`: parameter counts without
  the identity classifier, and as if it had the paper's 1000 outputs;
- :func:`eer_standard_error`: how precisely an EER is known from a given number of comparisons.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import read_json
from .errors import DataError

__all__ = [
    "PruneRun",
    "load_prune_runs",
    "load_train_runs",
    "combined_history",
    "spearman",
    "permutation_pvalue",
    "width_order",
    "width_rank_summary",
    "smallest_within_tolerance",
    "largest_removal_within_tolerance",
    "interpolate_at",
    "squeezenet_classifier_params",
    "squeezenet_param_split",
    "eer_standard_error",
    "finite_or_none",
]

HISTORY_SUFFIX = "_history.csv"
LAYERS_SUFFIX = "_layers.csv"


@dataclass
class PruneRun:
    """One pruning run: its key ``<arch>-<criterion>``, summary JSON, history and layer table."""

    key: str
    arch: str
    criterion: str
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)
    layers: pd.DataFrame | None = None  # rows: groups in network order; columns: steps (int)


def _split_key(key: str) -> tuple[str, str]:
    # Architecture names use underscores, never hyphens, so the first hyphen separates the two.
    arch, sep, criterion = key.partition("-")
    if not sep or not arch or not criterion:
        raise DataError(f"run key {key!r} is not '<arch>-<criterion>'")
    return arch, criterion


def load_prune_runs(prune_dir: str | os.PathLike) -> dict[str, PruneRun]:
    """Every pruning run under ``prune_dir`` (found by its ``<key>_history.csv``), sorted by key.

    An empty or missing folder gives an empty dict: the caller decides what that means.
    """
    folder = Path(prune_dir)
    runs: dict[str, PruneRun] = {}
    for path in sorted(folder.glob(f"*{HISTORY_SUFFIX}")):
        key = path.name[: -len(HISTORY_SUFFIX)]
        summary_path = folder / f"{key}.json"
        summary = read_json(summary_path) if summary_path.is_file() else {}
        arch, criterion = _split_key(key)
        arch = summary.get("arch", arch)  # the key's criterion part names variants apart
        history = pd.read_csv(path)
        missing = {"step", "stage", "filters_removed_pct", "params"} - set(history.columns)
        if missing:
            raise DataError(f"{path} lacks the columns {sorted(missing)}")
        history.insert(0, "criterion", criterion)
        history.insert(0, "arch", arch)
        history.insert(0, "run", key)
        layers_path = folder / f"{key}{LAYERS_SUFFIX}"
        layers = None
        if layers_path.is_file():
            layers = pd.read_csv(layers_path, index_col=0)
            layers.columns = [int(c) for c in layers.columns]
        runs[key] = PruneRun(key, arch, criterion, history, summary, layers)
    return runs


def load_train_runs(train_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per trained network (``<arch>.json`` under ``train_dir``), indexed by arch."""
    rows = [read_json(p) for p in sorted(Path(train_dir).glob("*.json"))]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("arch")


def combined_history(runs: Iterable[PruneRun]) -> pd.DataFrame:
    """The histories of ``runs`` stacked into one long table (columns run, arch, criterion, ...)."""
    frames = [r.history for r in runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _ranks(x: np.ndarray) -> np.ndarray:
    # Ranks 1..n with ties sharing their average rank.
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(1, len(x) + 1)
    values = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or values[end] != values[start]:
            ranks[order[start:end]] = (start + 1 + end) / 2
            start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties: average ranks); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"spearman needs two 1-d sequences of one length, got {x.shape}, {y.shape}")
    if len(x) < 2:
        return float("nan")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def permutation_pvalue(
    x: Sequence[float], y: Sequence[float], *, n_permutations: int = 5000, seed: int = 0
) -> float:
    """Two-sided permutation p-value of :func:`spearman` (share of shuffles at least as extreme).

    Counts the observed arrangement as one of the shuffles, so the value is never 0.
    """
    observed = spearman(x, y)
    if math.isnan(observed):
        return float("nan")
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=float)
    extreme = sum(
        abs(spearman(x, rng.permutation(y))) >= abs(observed) - 1e-12 for _ in range(n_permutations)
    )
    return (extreme + 1) / (n_permutations + 1)


def width_order(layers: pd.DataFrame) -> pd.DataFrame:
    """Per group: initial width, share of channels removed by the last step, first losing step.

    ``layers`` has groups as rows and steps as columns (channels left). ``first_step`` is the first
    step at which the group had fewer channels than at the start; groups that never lost one get
    ``last step + 1`` (they come after every group that did), and ``never`` marks them.
    """
    if layers.shape[1] < 1 or len(layers) == 0:
        raise DataError("the layer table is empty")
    layers = layers[sorted(layers.columns)]
    width = layers.iloc[:, 0].astype(float)
    if (width <= 0).any():
        raise DataError("every group must start with at least one channel")
    steps = np.asarray(layers.columns, dtype=int)
    lost = layers.lt(width, axis=0).to_numpy()
    never = ~lost.any(axis=1)
    first = np.where(never, steps.max() + 1, steps[np.argmax(lost, axis=1)])
    return pd.DataFrame(
        {
            "width": width,
            "removed_share": 1 - layers.iloc[:, -1] / width,
            "first_step": first,
            "never": never,
        },
        index=layers.index,
    )


def width_rank_summary(
    layers: pd.DataFrame, *, n_permutations: int = 2000, seed: int = 0
) -> dict[str, float | int]:
    """Rank correlations behind "the widest layers lose filters first", with permutation p-values.

    ``rho_removed`` > 0: wider groups lose a larger share by the end. ``rho_first_step`` < 0: wider
    groups start losing channels earlier. Both support the papers' observation.
    """
    table = width_order(layers)
    kw = {"n_permutations": n_permutations, "seed": seed}
    return {
        "n_groups": len(table),
        "n_groups_pruned": int((~table["never"]).sum()),
        "rho_removed": spearman(table["width"], table["removed_share"]),
        "p_removed": permutation_pvalue(table["width"], table["removed_share"], **kw),
        "rho_first_step": spearman(table["width"], table["first_step"]),
        "p_first_step": permutation_pvalue(table["width"], table["first_step"], **kw),
    }


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


def finite_or_none(value) -> float | None:
    """A plain float for JSON, or None for NaN/None (numpy NaNs would otherwise be written)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
