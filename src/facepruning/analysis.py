"""Tables and statistics of the cross-run analysis (notebook 04): from metric files to numbers.

The training and pruning notebooks leave one set of files per run (``metrics/train/<arch>.json``,
``metrics/prune/<run>.json``, ``<run>_history.csv``, ``<run>_layers.csv``). File names only
locate a run's files: what a pruning run is (its architecture, criterion and whether its scores
were normalised) is read from the keys ``run``, ``arch``, ``criterion`` and
``normalize_scores`` of its metrics JSON. This module gathers whatever runs exist into pandas
tables and computes what the papers claim in words:

- :func:`load_prune_runs` / :func:`load_train_runs`: every run's files, one long history table;
  :func:`main_runs`: the run per architecture that stands for the papers' setup;
- :func:`spearman`, :func:`permutation_pvalue` (scipy.stats), :func:`width_order` /
  :func:`width_rank_summary`: do the widest layers lose filters first?
- :func:`smallest_within_tolerance`, :func:`largest_removal_within_tolerance`: the smallest network
  whose EER stays within a tolerance of the unpruned one (the SqueezerFaceNet selection);
- :func:`interpolate_at`: a metric at matched shares of filters removed (criterion comparison);
- :func:`squeezenet_classifier_params`, :func:`squeezenet_param_split`: parameter counts without
  the identity classifier, and as if it had the paper's 1000 outputs;
- :func:`eer_standard_error`: how precisely an EER is known from a given number of comparisons;
- :func:`load_scores` (``scores/<run>.pt``, every pair's score at every history row),
  :func:`point_intervals`, :func:`paired_difference_at`: identity-bootstrap intervals
  (:mod:`facepruning.statistics`), paired between rows and runs on the same resamples;
  :func:`verdict`, :func:`judge_claims`: holds / refuted / inconclusive for the claims C1-C7 of
  docs/PAPERS.md, by whether the 95% interval clears each claim's threshold;
  :func:`width_null_position`: the observed width-vs-removal rho against random removal.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from . import statistics as st
from . import verification
from .artifacts import load_torch, read_json, write_csv, write_json
from .errors import DataError

__all__ = [
    "PruneRun",
    "load_prune_runs",
    "main_runs",
    "variant_label",
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
    "CLAIMS",
    "RunScores",
    "load_scores",
    "check_scores",
    "point_intervals",
    "paired_difference_at",
    "verdict",
    "width_null_position",
    "control_runs",
    "judge_claims",
    "SCHEMA",
    "Summary",
    "counts_for",
    "interval_table",
    "criteria_comparison",
    "squeezerfacenet_pick",
    "layer_width_table",
    "curve_table",
    "layer_steps_table",
    "summarize",
    "write_summary",
    "headline",
    "fmt_interval",
    "check_histories",
    "run_inventory",
    "baseline_table",
    "claims_table",
    "numbers_of",
    "decided_by",
    "interval_side",
]

HISTORY_SUFFIX = "_history.csv"
LAYERS_SUFFIX = "_layers.csv"
#: What every pruning run's metrics JSON must say about the run (written by the prune stage).
RUN_KEYS = ("run", "arch", "criterion", "normalize_scores")
#: The papers' criterion, and the criteria the prune stage knows.
MAIN_CRITERION = "taylor_activation"
CRITERIA = ("taylor_activation", "taylor_weight", "l1_norm", "random", "none")
#: The criterion of a no-pruning control run (same schedule, nothing removed).
CONTROL_CRITERION = "none"


@dataclass
class PruneRun:
    """One pruning run: its name, what it is (from its metrics JSON), history and layer table.

    ``key`` is the run's name (``<run>`` of its file names); ``variant`` labels it for display:
    the criterion, plus " (unnormalised)" when its scores were not normalised.
    """

    key: str
    arch: str
    criterion: str
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)
    layers: pd.DataFrame | None = None  # rows: groups in network order; columns: steps (int)
    normalize_scores: bool = True
    variant: str = ""

    def __post_init__(self) -> None:
        if not self.variant:
            self.variant = variant_label(self.criterion, self.normalize_scores)


def variant_label(criterion: str, normalize_scores: bool) -> str:
    """The display label of a run: ``criterion``, plus " (unnormalised)" for a ranking criterion
    run without normalisation (random and the control never normalise, so they need no mark)."""
    unscaled = not normalize_scores and criterion not in ("random", CONTROL_CRITERION)
    return f"{criterion} (unnormalised)" if unscaled else criterion


def _stage_of(key: str) -> str:
    """The dvc.yaml stage that writes run ``key``: ``control@<arch>`` or ``prune@<run>``."""
    arch, _, rest = key.partition("-")
    return f"control@{arch}" if rest == "control" else f"prune@{key}"


def _run_description(path: Path, key: str) -> dict:
    """``run``, ``arch``, ``criterion`` and ``normalize_scores`` of the run whose metrics JSON is
    ``path``, checked; the whole JSON is returned."""
    rerun = f"rerun its stage (dvc repro -f {_stage_of(key)}, or notebook 03) to rewrite it"
    if not path.is_file():
        raise DataError(f"{path} (the metrics of pruning run {key!r}) is missing: {rerun}")
    summary = read_json(path)
    missing = [k for k in RUN_KEYS if k not in summary]
    if missing:
        raise DataError(
            f"{path} lacks the keys {missing} (written by an older prune stage): {rerun}"
        )
    if summary["run"] != key:
        raise DataError(
            f"{path} describes run {summary['run']!r}, not {key!r} (its file name): was it "
            f"renamed, or written without run={key}? {rerun}"
        )
    if summary["criterion"] not in CRITERIA:
        raise DataError(
            f"{path}: unknown criterion {summary['criterion']!r}, not one of {CRITERIA}"
        )
    if not isinstance(summary["normalize_scores"], bool):
        raise DataError(
            f"{path}: normalize_scores must be true or false, not {summary['normalize_scores']!r}"
        )
    return summary


def _load_run(folder: Path, key: str) -> PruneRun:
    summary = _run_description(folder / f"{key}.json", key)
    path = folder / f"{key}{HISTORY_SUFFIX}"
    history = pd.read_csv(path)
    missing = {"step", "stage", "filters_removed_pct", "params"} - set(history.columns)
    if missing:
        raise DataError(f"{path} lacks the columns {sorted(missing)}")
    arch, criterion, normalized = summary["arch"], summary["criterion"], summary["normalize_scores"]
    variant = variant_label(criterion, normalized)
    for name, value in [
        ("normalize_scores", normalized),
        ("variant", variant),
        ("criterion", criterion),
        ("arch", arch),
        ("run", key),
    ]:
        history.insert(0, name, value)
    layers_path = folder / f"{key}{LAYERS_SUFFIX}"
    layers = None
    if layers_path.is_file():
        layers = pd.read_csv(layers_path, index_col=0)
        layers.columns = [int(c) for c in layers.columns]
    return PruneRun(key, arch, criterion, history, summary, layers, normalized, variant)


def load_prune_runs(prune_dir: str | os.PathLike) -> dict[str, PruneRun]:
    """Every pruning run under ``prune_dir`` (found by its ``<run>_history.csv``), sorted by name.

    What each run is comes from its ``<run>.json`` (keys :data:`RUN_KEYS`); a run whose JSON is
    missing or lacks them raises :class:`DataError` naming the file. The history gains the
    columns ``run``, ``arch``, ``criterion``, ``variant`` and ``normalize_scores`` in front. An
    empty or missing folder gives an empty dict: the caller decides what that means.
    """
    folder = Path(prune_dir)
    keys = [p.name[: -len(HISTORY_SUFFIX)] for p in sorted(folder.glob(f"*{HISTORY_SUFFIX}"))]
    return {key: _load_run(folder, key) for key in keys}


def main_runs(
    runs: Mapping[str, PruneRun],
    *,
    arch_order: Sequence[str] = (),
    criterion: str = MAIN_CRITERION,
) -> dict[str, str]:
    """The main run per architecture, ``{arch: run name}``: the ``criterion`` run with normalised
    scores (the papers' setup); failing that, an unnormalised ``criterion`` run; failing that,
    the first run by name; never a no-pruning control (criterion ``none``). Architectures of
    ``arch_order`` come first, in that order."""
    runs = {k: r for k, r in runs.items() if r.criterion != CONTROL_CRITERION}
    archs = {r.arch for r in runs.values()}
    order = [a for a in arch_order if a in archs] + sorted(archs - set(arch_order))
    main = {}
    for arch in order:
        keys = sorted(k for k, r in runs.items() if r.arch == arch)
        main[arch] = min(
            keys,
            key=lambda k: (runs[k].criterion != criterion, not runs[k].normalize_scores),
        )
    return main


def load_train_runs(train_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per trained network (``<arch>.json`` under ``train_dir``), indexed by arch."""
    rows = [read_json(p) for p in sorted(Path(train_dir).glob("*.json"))]
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index("arch")


def combined_history(runs: Iterable[PruneRun]) -> pd.DataFrame:
    """The histories of ``runs`` stacked into one long table (columns run, arch, criterion,
    variant, normalize_scores, ...)."""
    frames = [r.history for r in runs]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _check_pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"spearman needs two 1-d sequences of one length, got {x.shape}, {y.shape}")
    return x, y


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``; ties: average ranks); NaN when
    either side is constant or has fewer than two values."""
    x, y = _check_pair(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def permutation_pvalue(
    x: Sequence[float], y: Sequence[float], *, n_permutations: int = 5000, seed: int = 0
) -> float:
    """Two-sided permutation p-value of :func:`spearman`: the share of orders of ``y`` whose
    ``|rho|`` is at least the observed one (``scipy.stats.permutation_test``, pairings).

    With more permutations than orders of ``y`` every order is tried (exact); otherwise
    ``n_permutations`` random ones, counting the observed order as one of them, so the value is
    never 0. NaN where :func:`spearman` is.
    """
    x, y = _check_pair(x, y)
    if math.isnan(spearman(x, y)):
        return float("nan")
    rx = stats.rankdata(x)
    rx = rx - rx.mean()

    def abs_rho(ry: np.ndarray, axis: int = -1) -> np.ndarray:
        # Spearman's rho of x with each permuted order of y: Pearson's r of the ranks (the ranks
        # of a permuted y are the permuted ranks of y, ties keeping their average rank).
        ry = ry - ry.mean(axis=axis, keepdims=True)
        r = (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum() * (ry**2).sum(axis=axis))
        return np.abs(r)

    result = stats.permutation_test(
        (stats.rankdata(y),),
        abs_rho,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="greater",
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


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


# --------------------------------------------------------------------------------------------
# per-comparison scores: identity-bootstrap intervals and verdicts on the papers' claims
# --------------------------------------------------------------------------------------------
SCORES_KEYS = ("identities", "rows", "pairs", "scores")
#: The claims of docs/PAPERS.md that :func:`judge_claims` judges.
CLAIMS = {
    "C1": "pruning 10-15% of SqueezeNet's filters slightly improves results",
    "C2": "with 5-image templates SqueezeNet holds its performance up to 30-40% removed",
    "C3": "with 1-image templates SqueezeNet degrades past about 15% of filters removed",
    "C4": "fine-tuning recovers part of the loss",
    "C5": "SqueezeNet loses 24% of its parameters (SqueezerFaceNet) at no appreciable loss",
    "C6": "across the networks a large share of filters can go with minimal loss",
    "C7": "the filters of the layers with the most output channels tend to be removed first",
}
VERDICTS = ("holds", "refuted", "inconclusive")


@dataclass
class RunScores:
    """The score of every test pair at every history row of one pruning run (``scores/<run>.pt``).

    ``rows``: one per history row (columns step, stage), in the history's order; ``pairs[block]``:
    ``a``, ``b`` (codes into ``identities``) and ``genuine`` arrays; ``scores[block]``:
    float64 ``[rows, pairs]``. Blocks are ``t1`` (1-image) and ``t5`` (5-image templates).
    """

    path: Path
    identities: list[str]
    rows: pd.DataFrame
    pairs: dict[str, dict[str, np.ndarray]]
    scores: dict[str, np.ndarray]

    def row(self, step: int, stage: str) -> int:
        """The position of the row of ``step`` and ``stage``; DataError when there is none."""
        hit = np.flatnonzero((self.rows["step"] == step) & (self.rows["stage"] == stage))
        if hit.size == 0:
            raise DataError(f"{self.path} has no row for step {step}, stage {stage!r}")
        return int(hit[0])


def _scores_error(path: Path, what: str) -> DataError:
    return DataError(
        f"{path} {what}: rerun the stage that writes it (dvc repro -f {_stage_of(path.stem)})"
    )


def load_scores(path: str | os.PathLike) -> RunScores:
    """Read ``scores/<run>.pt`` (``artifacts.load_torch``) into a :class:`RunScores`, checked:
    a missing or malformed file raises DataError naming it and saying to rerun the prune stage."""
    path = Path(path)
    if not path.is_file():
        raise _scores_error(path, "(the per-pair scores of a pruning run) is missing")
    raw = load_torch(path, remedy=f"the stage that writes it (dvc repro -f {_stage_of(path.stem)})")
    if not isinstance(raw, Mapping) or any(k not in raw for k in SCORES_KEYS):
        raise _scores_error(path, f"is not a dict with the keys {list(SCORES_KEYS)}")
    try:
        rows = pd.DataFrame(
            [{"step": int(r["step"]), "stage": str(r["stage"])} for r in raw["rows"]]
        )
        pairs = {
            block: {k: np.asarray(p[k]) for k in ("a", "b", "genuine")}
            for block, p in raw["pairs"].items()
        }
        scores = {block: np.asarray(s, dtype=np.float64) for block, s in raw["scores"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise _scores_error(path, f"is malformed ({type(exc).__name__}: {exc})") from exc
    for block, s in scores.items():
        p = pairs.get(block)
        if p is None or s.ndim != 2 or s.shape != (len(rows), len(p["genuine"])):
            raise _scores_error(
                path, f"has scores[{block!r}] of shape {s.shape}, not [rows, pairs]"
            )
        if any(p[k].shape != p["genuine"].shape for k in ("a", "b")):
            raise _scores_error(path, f"has pairs[{block!r}] a, b, genuine of unequal lengths")
        p["genuine"] = p["genuine"].astype(bool)
    return RunScores(path, [str(i) for i in raw["identities"]], rows, pairs, scores)


def check_scores(run: PruneRun, run_scores: RunScores) -> None:
    """DataError unless ``run_scores`` has one row per history row of ``run``, in its order."""
    mine = run_scores.rows[["step", "stage"]].reset_index(drop=True)
    theirs = run.history[["step", "stage"]].reset_index(drop=True).astype({"step": int})
    if len(mine) != len(theirs) or not mine.equals(theirs.astype({"stage": str})):
        raise _scores_error(
            run_scores.path, f"does not match the rows of {run.key}{HISTORY_SUFFIX}"
        )


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


def point_intervals(
    run_scores: RunScores, counts: np.ndarray, fars: Sequence[float] = (0.01,), level: float = 0.95
) -> pd.DataFrame:
    """For every row: EER (``t1``, and ``t5`` when present) and TAR at each of ``fars`` (``t1``)
    with its identity-bootstrap percentile interval; columns step, stage, metric, estimate,
    low, high (one line per row and metric)."""
    metrics = [f"{b}/eer" for b in ("t1", "t5") if b in run_scores.scores]
    metrics += [f"t1/{verification.far_key(f)}" for f in fars if "t1" in run_scores.scores]
    out = []
    for r, (step, stage) in enumerate(run_scores.rows[["step", "stage"]].itertuples(index=False)):
        for metric in metrics:
            estimate, reps = _metric_values(run_scores, r, metric, counts)
            low, high = st.percentile_interval(reps, level)
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
    same identity resamples: ``{estimate, low, high}`` (the percentile interval)."""
    _check_same_pairs(run_a_scores, run_b_scores, metric.partition("/")[0])
    ea, ra = _metric_values(run_a_scores, run_a_scores.row(*row_a), metric, counts)
    eb, rb = _metric_values(run_b_scores, run_b_scores.row(*row_b), metric, counts)
    return st.paired_difference(ra, rb, estimate=ea - eb, level=level).as_dict()


def verdict(estimate: float, low: float, high: float, *, threshold: float, direction: str) -> str:
    """``"holds"`` when the interval lies entirely on the claim's side of ``threshold`` (strictly
    below it for ``direction="below"``, strictly above for ``"above"``), ``"refuted"`` when it
    lies entirely on the other side, ``"inconclusive"`` when it touches or straddles it (or is
    NaN). ``estimate`` is not used: only the interval decides."""
    if direction not in ("below", "above"):
        raise DataError(f"direction must be 'below' or 'above', not {direction!r}")
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    below, above = high < threshold, low > threshold
    if direction == "below":
        return "holds" if below else "refuted" if above else "inconclusive"
    return "holds" if above else "refuted" if below else "inconclusive"


@dataclass
class _Judge:
    """What every claim needs: the runs, their scores, the resamples and the tolerance."""

    runs: Mapping[str, PruneRun]
    scores: Mapping[str, RunScores]
    counts: np.ndarray
    tolerance: float
    level: float = 0.95

    def values(self, key: str, row: tuple[int, str], metric: str) -> tuple[float, np.ndarray]:
        rs = self.scores[key]
        return _metric_values(rs, rs.row(*row), metric, self.counts)

    def diff(self, a: tuple[str, tuple[int, str]], b: tuple[str, tuple[int, str]], metric: str):
        _check_same_pairs(self.scores[a[0]], self.scores[b[0]], metric.partition("/")[0])
        (ea, ra), (eb, rb) = self.values(*a, metric), self.values(*b, metric)
        return st.paired_difference(ra, rb, estimate=ea - eb, level=self.level)


def _entry(
    cid: str, metric: str, iv: st.Interval, threshold: float, direction: str, detail: str
) -> dict:
    """One verdict line; ``cid`` like ``"C6/resnet50"`` takes its claim text from ``C6``."""
    return {
        "id": cid,
        "claim": CLAIMS[cid.split("/")[0]],
        "metric": metric,
        "estimate": iv.estimate,
        "low": iv.low,
        "high": iv.high,
        "threshold": threshold,
        "verdict": verdict(iv.estimate, iv.low, iv.high, threshold=threshold, direction=direction),
        "detail": detail,
    }


def _unjudged(cid: str, metric: str, threshold: float, reason: str) -> dict:
    nan = st.Interval(float("nan"), float("nan"), float("nan"))
    return _entry(cid, metric, nan, threshold, "below", reason)


def _combine(cid: str, entries: Sequence[dict], threshold: float, what: str) -> dict:
    """All-networks verdict: holds if it holds for every entry, refuted if refuted for any,
    else inconclusive. The numbers shown are those of an entry that decides it (one whose own
    verdict is the overall one; of those, the largest upper end), so that the estimate and
    interval beside the verdict agree with it."""
    if not entries:
        return _unjudged(cid, "", threshold, f"no run to judge ({what})")
    verdicts = [e["verdict"] for e in entries]
    overall = (
        "refuted"
        if "refuted" in verdicts
        else "holds"
        if all(v == "holds" for v in verdicts)
        else "inconclusive"
    )
    deciding = [e for e in entries if e["verdict"] == overall] or list(entries)
    worst = max(deciding, key=lambda e: e["high"] if math.isfinite(e["high"]) else math.inf)
    names = ", ".join(f"{e['id']}: {e['verdict']}" for e in entries)
    return {
        **worst,
        "id": cid,
        "claim": CLAIMS[cid],
        "verdict": overall,
        "detail": f"{what}; numbers of {worst['id']}; {names}",
        "shown": worst["id"],  # the sub-line whose numbers these are (numbers_of)
    }


def _closest_row(history: pd.DataFrame, pct: float, stage: str = "pruned") -> pd.Series | None:
    rows = history[history["stage"] == stage]
    if rows.empty:
        return None
    return rows.loc[(rows["filters_removed_pct"] - pct).abs().idxmin()]


ORIGINAL = (0, "original")


def _claim_at_share(
    j: _Judge, cid: str, key: str | None, pct: float, metric: str, threshold: float, direction: str
) -> dict:
    """C1-C3: ``metric`` at the pruned row closest to ``pct``% removed minus the original."""
    if key is None or key not in j.scores:
        return _unjudged(cid, metric, threshold, "no SqueezeNet main run with scores")
    row = _closest_row(j.runs[key].history, pct)
    if row is None:
        return _unjudged(cid, metric, threshold, f"{key} has no pruned row")
    at = (int(row["step"]), "pruned")
    iv = j.diff((key, at), (key, ORIGINAL), metric)
    detail = (
        f"{key} step {at[0]} ({row['filters_removed_pct']:.1f}% filters removed, target "
        f"{pct:g}%) minus original"
    )
    return _entry(cid, f"{metric} change", iv, threshold, direction, detail)


def _claim_c1_control(j: _Judge, key: str | None, control: str | None) -> list[dict]:
    """C1 against the equally trained control at the same step (pruned vs nothing removed)."""
    metric = "t1/eer"
    if key is None or control is None or key not in j.scores or control not in j.scores:
        return []
    row = _closest_row(j.runs[key].history, 12.5)
    if row is None:
        return []
    step = int(row["step"])
    rows = j.scores[control].rows
    stages = rows.loc[rows["step"] == step, "stage"].tolist()
    if not stages:
        return [_unjudged("C1/control", metric, 0.0, f"{control} has no row at step {step}")]
    stage = "pruned" if "pruned" in stages else stages[0]
    iv = j.diff((key, (step, "pruned")), (control, (step, stage)), metric)
    detail = f"{key} step {step} minus control {control} step {step} ({stage}), equally trained"
    return [_entry("C1/control", f"{metric} change", iv, 0.0, "below", detail)]


def _claim_c4(j: _Judge, main: Mapping[str, str], metric: str = "t1/eer") -> dict:
    """C4: per network, mean over steps of EER(pruned) - EER(finetuned) > 0; then combined."""
    entries = []
    for arch, key in main.items():
        if key not in j.scores:
            continue
        rows = j.scores[key].rows
        steps = sorted(
            set(rows.loc[rows.stage == "pruned", "step"])
            & set(rows.loc[rows.stage == "finetuned", "step"])
        )
        if not steps:
            entries.append(_unjudged(f"C4/{arch}", metric, 0.0, f"{key}: no fine-tuned step"))
            continue
        est, reps = 0.0, 0.0
        for s in steps:
            (ep, rp), (ef, rf) = (
                j.values(key, (s, "pruned"), metric),
                j.values(key, (s, "finetuned"), metric),
            )
            est, reps = est + (ep - ef) / len(steps), reps + (rp - rf) / len(steps)
        low, high = st.percentile_interval(reps, j.level)
        detail = f"{key}: mean over {len(steps)} steps of pruned minus fine-tuned"
        entries.append(
            _entry(f"C4/{arch}", metric, st.Interval(est, low, high), 0.0, "above", detail)
        )
    return [*entries, _combine("C4", entries, 0.0, "every network's fine-tuning must recover")]


def _claim_c5(
    j: _Judge,
    key: str | None,
    metric: str = "t1/eer",
    reduction: float = 0.24,
    stages: Sequence[str] = ("pruned", "finetuned", "final"),
) -> dict:
    """C5: the largest-removal row whose EER change interval stays below +tolerance must have at
    least ``reduction`` fewer parameters than the original (see :func:`judge_claims`)."""
    tol = j.tolerance
    if key is None or key not in j.scores:
        return _unjudged("C5", metric, tol, "no SqueezeNet main run with scores")
    hist = j.runs[key].history
    p0 = float(hist.loc[hist.stage == "original", "params"].iloc[0])
    lines = []
    for _, row in _chain(hist, stages).iterrows():
        at = (int(row["step"]), str(row["stage"]))
        lines.append((1 - row["params"] / p0, at, j.diff((key, at), (key, ORIGINAL), metric)))
    if not lines:
        return _unjudged("C5", metric, tol, f"{key} has no {list(stages)} rows")
    ok = [x for x in lines if x[2].high < tol]
    big = [x for x in lines if x[0] >= reduction]
    if ok and max(ok, key=lambda x: x[0])[0] >= reduction:
        red, at, iv = max(ok, key=lambda x: x[0])
        v = "holds"
    elif big and all(x[2].low > tol for x in big):
        red, at, iv = min(big, key=lambda x: x[0])
        v = "refuted"
    else:  # shown where the network is first as small as the claim's and not clearly worse
        open_rows = [x for x in big if x[2].low <= tol]
        red, at, iv = (
            min(open_rows, key=lambda x: x[0]) if open_rows else max(lines, key=lambda x: x[0])
        )
        v = "inconclusive"
    entry = _entry("C5", f"{metric} change", iv, tol, "below", "")
    entry["verdict"] = v
    entry["detail"] = (
        f"{key} step {at[0]} ({at[1]}): {100 * red:.1f}% fewer parameters (claim: "
        f"{100 * reduction:.0f}%); {len(ok)} rows whose interval stays below +{tol:g}, "
        f"{len(big)} rows at >= {100 * reduction:.0f}% fewer parameters"
    )
    return entry


def _claim_c6(j: _Judge, main: Mapping[str, str], metric: str = "t1/eer", share: float = 50.0):
    """C6: at each network's final row (>= ``share``% removed), EER change below +tolerance."""
    entries = []
    for arch, key in main.items():
        if key not in j.scores:
            continue
        hist = j.runs[key].history
        final = hist[hist.stage == "final"]
        row = (final if len(final) else hist).iloc[-1]
        at, pct = (int(row["step"]), str(row["stage"])), float(row["filters_removed_pct"])
        iv = j.diff((key, at), (key, ORIGINAL), metric)
        entry = _entry(
            f"C6/{arch}",
            f"{metric} change",
            iv,
            j.tolerance,
            "below",
            f"{key} step {at[0]} ({at[1]}, {pct:.1f}% filters removed) minus original",
        )
        if pct < share:
            entry["verdict"] = "inconclusive"
            entry["detail"] += f"; fewer than {share:g}% removed: not a large share"
        entries.append(entry)
    return [*entries, _combine("C6", entries, j.tolerance, "must hold for every network")]


def width_null_position(
    layers: pd.DataFrame,
    *,
    min_channels: int = 1,
    channel_multiple: int = 1,
    n: int = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Observed Spearman rho (width vs share removed, :func:`width_order`) of a layer table and
    its place in :func:`statistics.width_null` for the same channels removed at each step under
    the run's ``min_channels`` and ``channel_multiple``: ``{rho, p, low, high, median, removed}``
    (low/high: the null's 2.5% and 97.5% quantiles)."""
    table = width_order(layers)
    ordered = layers[sorted(layers.columns)]
    last = ordered.iloc[:, -1].to_numpy()
    removed = int(round(float((table["width"].to_numpy() - last).sum())))
    rho = spearman(table["width"], table["removed_share"])
    null = st.width_null(
        table["width"].to_numpy(),
        removed,
        min_channels=min_channels,
        channel_multiple=channel_multiple,
        steps=(-np.diff(ordered.sum(axis=0).to_numpy())).tolist(),
        n=n,
        seed=seed,
    )
    return {**st.null_position(rho, null), "removed": removed}


def _claim_c7(
    j: _Judge, main: Mapping[str, str], *, min_channels: int, n_null: int, seed: int
) -> list[dict]:
    """C7 for every run with a layer table (controls left out), then combined over main runs."""
    entries = {}
    for key, run in j.runs.items():
        metric = "spearman rho (width, share removed) vs random-removal null [2.5%, 97.5%]"
        if run.criterion == CONTROL_CRITERION or run.layers is None:
            continue
        pos = width_null_position(
            run.layers,
            min_channels=int(run.summary.get("min_channels", min_channels)),
            channel_multiple=int(run.summary.get("channel_multiple", 1)),
            n=n_null,
            seed=seed,
        )
        iv = st.Interval(pos["rho"], pos["rho"], pos["rho"])
        entry = _entry(f"C7/{key}", metric, iv, pos["high"], "above", "")
        entry["verdict"] = (
            "holds"
            if pos["rho"] > pos["high"]
            else "refuted"
            if pos["rho"] < pos["low"]
            else "inconclusive"
        )  # NaN rho (nothing removed) compares False both ways: inconclusive
        entry.update(low=pos["low"], high=pos["high"])
        entry["detail"] = (
            f"{run.criterion}: rho {pos['rho']:.3f}, null median {pos['median']:.3f}, "
            f"two-sided p {pos['p']:.4f}, {pos['removed']} channels removed"
        )
        entries[key] = entry
    mains = [entries[k] for k in main.values() if k in entries]
    return [*entries.values(), _combine("C7", mains, float("nan"), "over the main runs")]


def control_runs(runs: Mapping[str, PruneRun]) -> dict[str, str]:
    """The no-pruning control run per architecture (criterion ``none``), ``{arch: run name}``."""
    return {r.arch: k for k, r in sorted(runs.items()) if r.criterion == CONTROL_CRITERION}


def judge_claims(
    runs: Mapping[str, PruneRun],
    scores: Mapping[str, RunScores],
    *,
    tolerance: float,
    counts: np.ndarray,
    controls: Mapping[str, str] | None = None,
    main: Mapping[str, str] | None = None,
    squeezenet: str = "squeezenet",
    min_channels: int = 1,
    n_null: int = 10000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """Verdicts on the claims C1-C7 of docs/PAPERS.md, one dict per line: ``id``, ``claim``,
    ``metric``, ``estimate``, ``low``, ``high`` (the ``level`` identity-bootstrap percentile
    interval over ``counts``, paired: both sides of a difference on the same resamples),
    ``threshold``, ``verdict`` (:func:`verdict`), ``detail``. Sub-lines (``C4/<arch>``,
    ``C6/<arch>``, ``C7/<run>``, ``C1/control``) come before their combined line.

    ``main`` defaults to :func:`main_runs`, ``controls`` to :func:`control_runs`; runs without
    scores are left out (a claim whose run is missing is ``inconclusive``). ``tolerance`` is
    the EER increase still counted as "no appreciable loss".
    """
    main = dict(main_runs(runs) if main is None else main)
    controls = control_runs(runs) if controls is None else controls
    for key, rs in scores.items():
        if key in runs:
            check_scores(runs[key], rs)
    j = _Judge(runs, scores, counts, tolerance, level)
    sq = main.get(squeezenet)
    tol = tolerance
    return [
        _claim_at_share(j, "C1", sq, 12.5, "t1/eer", 0.0, "below"),
        *_claim_c1_control(j, sq, controls.get(squeezenet)),
        _claim_at_share(j, "C2", sq, 35.0, "t5/eer", tol, "below"),
        _claim_at_share(j, "C3", sq, 30.0, "t1/eer", tol, "above"),
        *_claim_c4(j, main),
        _claim_c5(j, sq),
        *_claim_c6(j, main),
        *_claim_c7(j, main, min_channels=min_channels, n_null=n_null, seed=seed),
    ]


# --------------------------------------------------------------------------------------------
# the analysis' summary: metrics/analysis.json (compact) and its CSV tables
# --------------------------------------------------------------------------------------------
#: Version of the layout :func:`summarize` writes; ``readme`` and its test read it.
SCHEMA = 2
#: The metrics every interval table holds (when measured), in display order.
INTERVAL_METRICS = ("t1/eer", "t5/eer", "t1/tar@far=0.01")
#: Short, dvc-friendly names of :data:`INTERVAL_METRICS` (keys with no "/", "@", "=").
METRIC_KEYS = {"t1/eer": "t1_eer", "t5/eer": "t5_eer", "t1/tar@far=0.01": "t1_tar_far1"}


@dataclass
class Summary:
    """What :func:`summarize` computes: ``compact`` (for ``metrics/analysis.json``: every
    network's, claim's and criterion's numbers with their intervals; :func:`headline` picks what
    ``dvc metrics show`` lists) and ``tables`` (one pandas table per CSV under
    ``metrics/analysis/``)."""

    compact: dict
    tables: dict[str, pd.DataFrame]


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


def _final_row(history: pd.DataFrame) -> pd.Series:
    """The last ``final`` row, else the last row (a run without a final fine-tuning)."""
    final = history[history["stage"] == "final"]
    return (final if len(final) else history).iloc[-1]


def _ci(low, high) -> list | None:
    low, high = finite_or_none(low), finite_or_none(high)
    return None if low is None or high is None else [low, high]


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
        return st.Interval(estimate, *st.percentile_interval(reps, level))

    def diff(self, a, b, metric: str, level: float) -> st.Interval:
        _check_same_pairs(self.scores[a[0]], self.scores[b[0]], metric.partition("/")[0])
        (ea, ra), (eb, rb) = self.get(*a, metric), self.get(*b, metric)
        return st.paired_difference(ra, rb, estimate=ea - eb, level=level)


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
    variant, step, stage, filters_removed_pct, params, macs, descriptor_size, metric, estimate,
    low, high (the identity-bootstrap interval; the estimate equals the history's value)."""
    reps = _reps or _Replicates(scores, counts)
    size_cols = ["filters_removed_pct", "params", "macs", "descriptor_size"]
    out = []
    for key, run in runs.items():
        if key not in scores:
            continue
        check_scores(run, scores[key])
        for _, row in run.history.iterrows():
            at = (int(row["step"]), str(row["stage"]))
            sizes = {c: row.get(c, np.nan) for c in size_cols}
            for metric in metrics:
                if not reps.has(key, metric):
                    continue
                iv = reps.interval(key, at, metric, level)
                out.append(
                    {
                        "run": key,
                        "arch": run.arch,
                        "criterion": run.criterion,
                        "variant": run.variant,
                        "step": at[0],
                        "stage": at[1],
                        **sizes,
                        "metric": metric,
                        **iv.as_dict(),
                    }
                )
    return pd.DataFrame(out)


def _same_step_row(run_scores: RunScores, step: int, stage: str) -> tuple[int, str] | None:
    """The control's row at ``step``: the same stage where it has one, else its first row."""
    rows = run_scores.rows
    stages = rows.loc[rows["step"] == step, "stage"].tolist()
    if not stages:
        return None
    return step, stage if stage in stages else stages[0]


def _network_entry(
    arch: str,
    run: PruneRun,
    control: str | None,
    reps: _Replicates,
    tolerance: float,
    level: float,
    trained: pd.DataFrame | None,
) -> tuple[dict, list[dict]]:
    """The compact per-network entry and its long rows (networks.csv)."""
    h = run.history
    original, final = h.iloc[0], _final_row(h)
    at_final = (int(final["step"]), str(final["stage"]))
    entry: dict = {"run": run.key, "control": control}
    rows = []
    if trained is not None and arch in trained.index:
        t = trained.loc[arch]
        entry["converged"] = (
            None if "converged" not in t or pd.isna(t["converged"]) else bool(t["converged"])
        )
    entry["filters_removed_pct"] = finite_or_none(final["filters_removed_pct"])
    for col, name in (("params", "params"), ("macs", "macs"), ("descriptor_size", "descriptor")):
        if col in h:
            pair = [finite_or_none(original[col]), finite_or_none(final[col])]
            entry[name] = [None if v is None else int(round(v)) for v in pair]
    for metric in INTERVAL_METRICS:
        if metric not in h:
            continue
        name, item = METRIC_KEYS[metric], {}
        for label, at, row in (("original", ORIGINAL, original), ("final", at_final, final)):
            if reps.has(run.key, metric):
                iv = reps.interval(run.key, at, metric, level)
            else:
                iv = st.Interval(float(row[metric]), float("nan"), float("nan"))
            item[label] = finite_or_none(iv.estimate)
            item[f"{label}_ci"] = _ci(iv.low, iv.high)
            rows.append({"arch": arch, "metric": metric, "row": label, **iv.as_dict()})
        cat = _same_step_row(reps.scores[control], *at_final) if control in reps.scores else None
        if cat is not None and reps.has(run.key, metric):
            iv = reps.diff((run.key, at_final), (control, cat), metric, level)
            if metric == "t1/eer":  # the others: networks.csv only (analysis.json stays short)
                item["vs_control"] = finite_or_none(iv.estimate)
                item["vs_control_ci"] = _ci(iv.low, iv.high)
            rows.append(
                {"arch": arch, "metric": metric, "row": "final_minus_control", **iv.as_dict()}
            )
        entry[name] = item
    if "t1/eer" in h:
        entry["holds_to_pct"] = largest_removal_within_tolerance(h, "t1/eer", tolerance)
    for r in rows:
        r.update(run=run.key, step=at_final[0], stage=at_final[1])
    return entry, rows


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


def _share_rows(variant: str, run: PruneRun, grid, est, rep, level: float) -> list[dict]:
    rows = []
    for k, (p, e) in enumerate(zip(grid, est, strict=True)):
        low, high = st.percentile_interval(rep[k], level) if rep is not None else (np.nan,) * 2
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
        low_high = st.percentile_interval(rep.mean(axis=0), level)
        mean_row.update(zip(("low", "high"), low_high, strict=True))
    rows = [mean_row]
    if variant != ref_variant and rep is not None and ref_rep is not None:
        _check_same_pairs(reps.scores[run.key], reps.scores[ref_run.key], metric.partition("/")[0])
        iv = st.paired_difference(
            rep.mean(axis=0),
            ref_rep.mean(axis=0),
            estimate=mean - float(np.mean(ref_est)),
            level=level,
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
    mine = {r.variant: r for r in runs.values() if r.arch == arch and r.criterion != "none"}
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
        for row in _share_rows(v, mine[v], grid, est, rep, level)
    ]
    ref = (ref_run.variant, ref_run, *curves[ref_run.variant])
    out = {}
    for variant, curve in curves.items():
        out[variant], rows = _mean_against(variant, mine[variant], curve, ref, reps, metric, level)
        table += rows
    summary = {"metric": metric, "stage": stage, "reference": ref_run.variant}
    return {**summary, "shares": [float(p) for p in grid], "variants": out}, pd.DataFrame(table)


def squeezerfacenet_pick(
    run: PruneRun,
    reps: _Replicates,
    tolerance: float,
    *,
    metric: str = "t1/eer",
    level: float = 0.95,
) -> dict | None:
    """The SqueezerFaceNet selection: :func:`smallest_within_tolerance` over every stage of the
    SqueezeNet run, with its EER interval and the share of parameters saved (None: none)."""
    pick = smallest_within_tolerance(run.history, metric, tolerance)
    if pick is None:
        return None
    at = (int(pick["step"]), str(pick["stage"]))
    p0 = float(run.history["params"].iloc[0])
    iv = (
        reps.interval(run.key, at, metric, level)
        if reps.has(run.key, metric)
        else st.Interval(float(pick[metric]), float("nan"), float("nan"))
    )
    return {
        "run": run.key,
        "step": at[0],
        "stage": at[1],
        "metric": metric,
        "params": int(pick["params"]),
        "params_saved_pct": finite_or_none(100 * (1 - pick["params"] / p0)),
        "filters_removed_pct": finite_or_none(pick["filters_removed_pct"]),
        "eer": finite_or_none(iv.estimate),
        "eer_ci": _ci(iv.low, iv.high),
    }


def _claims_compact(claims: Sequence[Mapping]) -> dict:
    """The combined line of every claim (ids without "/"): verdict, estimate, interval, metric."""
    return {
        c["id"]: {
            "verdict": c["verdict"],
            "estimate": finite_or_none(c["estimate"]),
            "ci": _ci(c["low"], c["high"]),
            "metric": c["metric"],
        }
        for c in claims
        if "/" not in c["id"]
    }


def layer_width_table(runs: Mapping[str, PruneRun]) -> pd.DataFrame:
    """Channels left per layer group and step of every run with a layer table (long): run,
    arch, variant, layer (position, input first), group, step, channels, width (at the start)."""
    out = []
    for key, run in runs.items():
        if run.layers is None:
            continue
        t = run.layers[sorted(run.layers.columns)]
        for i, (group, row) in enumerate(t.iterrows()):
            for step, channels in row.items():
                out.append(
                    {
                        "run": key,
                        "arch": run.arch,
                        "variant": run.variant,
                        "layer": i,
                        "group": group,
                        "step": int(step),
                        "channels": int(channels),
                        "width": int(row.iloc[0]),
                    }
                )
    return pd.DataFrame(out)


def summarize(
    runs: Mapping[str, PruneRun],
    scores: Mapping[str, RunScores],
    claims: Sequence[Mapping],
    *,
    tolerance: float,
    counts: np.ndarray,
    trained: pd.DataFrame | None = None,
    main: Mapping[str, str] | None = None,
    controls: Mapping[str, str] | None = None,
    arch_order: Sequence[str] = ("squeezenet", "mobilenet_v2", "resnet50"),
    squeezenet: str = "squeezenet",
    level: float = 0.95,
) -> Summary:
    """Everything the analysis reports, from the loaded runs, their scores and ``claims``
    (:func:`judge_claims`). ``compact`` (``metrics/analysis.json``, :data:`SCHEMA`)::

        schema, eer_tolerance, main_runs {arch: run}
        networks.<arch>: run, control, converged, filters_removed_pct, holds_to_pct,
            params / macs / descriptor: [original, final],
            t1_eer / t5_eer / t1_tar_far1: {original, original_ci, final, final_ci},
                and for t1_eer also vs_control, vs_control_ci
        criteria: metric, stage, reference, shares,
            variants.<variant>: {run, mean, diff, diff_ci}   (diff: minus the reference)
        squeezerfacenet: run, step, stage, metric, params, params_saved_pct,
            filters_removed_pct, eer, eer_ci
        claims.<C1..C7>: verdict, estimate, ci, metric

    ``*_ci`` are ``[low, high]`` (``level`` identity-bootstrap percentile intervals; None
    without scores); ``dvc metrics show`` lists :func:`headline` of this, not this.
    ``vs_control`` is the final row minus the control's row at the same step and stage, paired
    (for every metric in the ``networks`` table).
    ``tables``: ``intervals`` (:func:`interval_table`), ``networks``, ``criteria``, ``claims``,
    ``layers`` (:func:`layer_width_table`); for ``dvc plots``: per network ``curves_<arch>``
    (:func:`curve_table`) and ``layers_<arch>`` (:func:`layer_steps_table`), and
    ``criteria_curves`` (one column per SqueezeNet run: its EER at the matched shares).
    """
    main = dict(main_runs(runs, arch_order=arch_order) if main is None else main)
    controls = control_runs(runs) if controls is None else controls
    reps = _Replicates(scores, counts)
    intervals = interval_table(runs, scores, counts, level=level, _reps=reps)
    networks, net_rows = {}, []
    for arch, key in main.items():
        entry, rows = _network_entry(
            arch, runs[key], controls.get(arch), reps, tolerance, level, trained
        )
        networks[arch], net_rows = entry, net_rows + rows
    criteria, criteria_table = criteria_comparison(runs, reps, arch=squeezenet, level=level)
    pick = (
        squeezerfacenet_pick(runs[main[squeezenet]], reps, tolerance, level=level)
        if squeezenet in main
        else None
    )
    compact = {
        "schema": SCHEMA,
        "eer_tolerance": tolerance,
        "main_runs": main,
        "networks": networks,
        "criteria": criteria or None,
        "squeezerfacenet": pick,
        "claims": _claims_compact(claims),
    }
    tables = {
        "intervals": intervals,
        "networks": pd.DataFrame(net_rows),
        "criteria": criteria_table,
        "claims": pd.DataFrame(list(claims)),
        "layers": layer_width_table(runs),
    }
    for arch, key in main.items():
        tables[f"curves_{arch}"] = curve_table(runs[key], runs.get(controls.get(arch, "")))
        if runs[key].layers is not None:
            tables[f"layers_{arch}"] = layer_steps_table(runs[key].layers)
    if len(criteria_table):
        shares = criteria_table[~criteria_table["share"].str.startswith("mean")]
        wide = shares.pivot(index="share", columns="run", values="estimate")
        wide.index = wide.index.astype(float).rename("filters_removed_pct")
        tables["criteria_curves"] = wide.sort_index().reset_index()
    return Summary(compact, tables)


def layer_steps_table(layers: pd.DataFrame) -> pd.DataFrame:
    """Filters per layer group at the start, the middle step and the end (columns ``layer``
    (position, input first), ``group``, ``start``, ``middle``, ``end``): fixed column names for
    ``dvc plots`` whatever the number of steps."""
    t = layers[sorted(layers.columns)]
    cols = list(t.columns)
    return pd.DataFrame(
        {
            "layer": np.arange(len(t)),
            "group": t.index.astype(str),
            "start": t[cols[0]].to_numpy(),
            "middle": t[cols[len(cols) // 2]].to_numpy(),
            "end": t[cols[-1]].to_numpy(),
        }
    )


def curve_table(run: PruneRun, control: PruneRun | None = None) -> pd.DataFrame:
    """One row per step of ``run`` (the original as step 0): ``step``, ``filters_removed_pct``,
    ``params``, ``macs`` and, per metric of :data:`INTERVAL_METRICS`, ``<key>_pruned`` and
    ``<key>_finetuned`` (the original's value at step 0) and ``<key>_control`` (the control's
    fine-tuned value at the same step, when a control is given): wide, for ``dvc plots``."""
    h = run.history
    steps = h[h["stage"].isin(["original", "pruned"])].sort_values("step")
    out = steps[["step", "filters_removed_pct", "params", "macs"]].reset_index(drop=True)
    for metric in [m for m in INTERVAL_METRICS if m in h]:
        name = METRIC_KEYS[metric]
        for stage in ("pruned", "finetuned"):
            rows = h[h["stage"].isin(["original", stage])].drop_duplicates("step", keep="last")
            out[f"{name}_{stage}"] = out["step"].map(rows.set_index("step")[metric]).to_numpy()
        if control is not None and metric in control.history:
            c = control.history
            c = c[c["stage"].isin(["original", "finetuned"])].drop_duplicates("step", keep="last")
            out[f"{name}_control"] = out["step"].map(c.set_index("step")[metric]).to_numpy()
    return out


def headline(compact: Mapping) -> dict:
    """The numbers ``dvc metrics show`` lists (about 35, plain keys), from ``Summary.compact``:
    per network the 1-image EER of the original and the final network, final minus its
    equally trained control, the shares of parameters saved and filters removed, and how far the
    EER stays within tolerance; every claim's verdict and estimate; the SqueezerFaceNet pick."""
    out: dict = {"eer_tolerance": compact["eer_tolerance"]}
    for arch, net in compact["networks"].items():
        p0, p1 = net["params"]
        saved = 100 * (1 - p1 / p0) if p0 and p1 is not None else None
        out[arch] = {
            "t1_eer_original": net["t1_eer"]["original"],
            "t1_eer_final": net["t1_eer"]["final"],
            "t1_eer_final_minus_control": net["t1_eer"].get("vs_control"),
            "params_saved_pct": finite_or_none(saved),
            "filters_removed_pct": net["filters_removed_pct"],
            "eer_within_tolerance_to_pct": net["holds_to_pct"],
        }
    out["claims"] = {
        cid: {"verdict": c["verdict"], "estimate": c["estimate"]}
        for cid, c in compact["claims"].items()
    }
    pick = compact.get("squeezerfacenet")
    if pick:
        out["squeezerfacenet"] = {
            "params_saved_pct": pick["params_saved_pct"],
            "t1_eer": pick["eer"],
        }
    return out


def write_summary(summary: Summary, metrics_path: str | os.PathLike) -> list[Path]:
    """Write ``summary.compact`` to ``metrics_path``, its :func:`headline` beside it
    (``<stem>_headline.json``, the DVC metric) and every table to
    ``<folder of metrics_path>/<its stem>/<name>.csv`` (``metrics/analysis.json`` ->
    ``metrics/analysis_headline.json``, ``metrics/analysis/``), byte-deterministically; returns
    the paths written."""
    path = Path(metrics_path)
    write_json(path, summary.compact)
    brief = path.with_name(f"{path.stem}_headline.json")
    write_json(brief, headline(summary.compact))
    folder = path.parent / path.stem
    written = [path, brief]
    for name, table in sorted(summary.tables.items()):
        if table is None or table.empty:
            continue
        out = folder / f"{name}.csv"
        write_csv(out, table, index=False, float_format="%.6g")
        written.append(out)
    return written


# --------------------------------------------------------------------------------------------
# small tables and phrases of notebook 04
# --------------------------------------------------------------------------------------------
def fmt_interval(estimate, low=None, high=None, digits: int = 3, sign: bool = False) -> str:
    """``"0.133 [0.110, 0.160]"`` (``low``/``high`` None or NaN: the estimate alone; ``"n/a"``
    for a missing estimate); ``sign`` writes a leading + on positive numbers."""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if finite_or_none(estimate) is None:
        return "n/a"
    text = f.format(estimate)
    if finite_or_none(low) is not None and finite_or_none(high) is not None:
        text += f" [{f.format(low)}, {f.format(high)}]"
    return text


def check_histories(runs: Mapping[str, PruneRun]) -> None:
    """DataError unless every run's history is sane: shares within 0-100%, one ``original`` row
    first, parameters and MACs never growing along pruned or fine-tuned rows, and a layer table
    (when there is one) with the history's steps and no layer growing."""
    for key, r in runs.items():
        h = r.history
        problems = []
        if not h["filters_removed_pct"].between(0, 100).all():
            problems.append("a share of filters removed outside 0-100%")
        if (h["stage"] == "original").sum() != 1 or h["stage"].iloc[0] != "original":
            problems.append("not exactly one 'original' row, first")
        for stage in ("pruned", "finetuned"):
            chain = h[h["stage"].isin(["original", stage])].sort_values("step")
            for col in ("params", "macs"):
                if col in chain and (np.diff(chain[col]) > 0).any():
                    problems.append(f"{col} grow along the {stage} rows")
        if r.layers is not None:
            if (r.layers.diff(axis=1).iloc[:, 1:] > 0).any().any():
                problems.append("a layer group grows in the layer table")
            if list(r.layers.columns) != sorted(h["step"].unique()):
                problems.append("the layer table's steps differ from the history's")
        if problems:
            raise DataError(f"pruning run {key}: {'; '.join(problems)}: rerun its prune stage")


def run_inventory(runs: Mapping[str, PruneRun], scores: Mapping[str, RunScores]) -> pd.DataFrame:
    """One line per run: network, variant, steps, filters removed (%) and parameters at the end,
    whether it has a layer table and pair scores."""
    rows = []
    for key, r in runs.items():
        h = r.history
        rows.append(
            {
                "run": key,
                "network": r.arch,
                "criterion": r.variant,
                "steps": int(h["step"].max()),
                "filters removed (%)": round(float(h["filters_removed_pct"].max()), 1),
                "parameters": f"{int(h['params'].iloc[0]):,} -> {int(h['params'].iloc[-1]):,}",
                "layer table": r.layers is not None,
                "pair scores": key in scores,
            }
        )
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def baseline_table(
    intervals: pd.DataFrame, main: Mapping[str, str], trained: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The unpruned network of every main run: each metric of ``intervals`` (the original row)
    as "estimate [low, high]", plus epochs and convergence from ``trained`` when known."""
    rows = []
    for arch, key in main.items():
        mine = intervals[(intervals["run"] == key) & (intervals["stage"] == "original")]
        row = {"network": arch}
        for _, m in mine.iterrows():
            row[m["metric"]] = fmt_interval(m["estimate"], m["low"], m["high"])
        if trained is not None and arch in trained.index:
            t = trained.loc[arch]
            row["epochs"] = t.get("epochs_run")
            row["converged"] = t.get("converged", "not recorded")
        rows.append(row)
    return pd.DataFrame(rows).set_index("network") if rows else pd.DataFrame()


def claims_table(
    claims: Mapping[str, Mapping], lines: Sequence[Mapping] | None = None
) -> pd.DataFrame:
    """The closing table of notebook 04 from ``summarize(...).compact["claims"]``: per claim
    what the papers report, the verdict, "estimate [95% interval]" and what was measured; with
    ``lines`` (:func:`judge_claims`) also "numbers of": the network or run whose numbers a
    combined claim shows (:func:`numbers_of`; empty for a claim judged on one run)."""
    deciding = numbers_of(lines) if lines is not None else {}
    rows = [
        {
            "claim": cid,
            "the papers report": CLAIMS.get(cid, cid),
            "verdict": c["verdict"],
            "ours: estimate [95% interval]": fmt_interval(
                c["estimate"], *(c["ci"] or [None, None]), sign=True
            ),
            "measured as": c["metric"],
            **({"numbers of": deciding.get(cid, "")} if lines is not None else {}),
        }
        for cid, c in claims.items()
    ]
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def numbers_of(lines: Sequence[Mapping]) -> dict[str, str]:
    """For every combined claim of ``lines`` (:func:`judge_claims`: ``C4``, ``C6``, ``C7``), what
    the sub-line ``<claim>/<what>`` whose numbers it shows is about (a network for C4 and C6, a
    run for C7), from its ``shown`` (:func:`_combine` shows the numbers of one entry whose
    verdict is the overall one). Claims judged on one run (C1-C3, C5) are left out."""
    out = {}
    for line in lines:
        cid, shown = line["id"], str(line.get("shown", ""))
        if "/" not in cid and shown.startswith(f"{cid}/"):
            out[cid] = shown.partition("/")[2]
    return out


def decided_by(lines: Sequence[Mapping], main: Mapping[str, str]) -> dict[str, str]:
    """The combined claims of ``lines`` that one network decides alone: its sub-line (of those
    combined, the ``main`` networks or runs) is the only one with the overall verdict, and the
    combined line shows its numbers (:func:`numbers_of`); ``{claim: network or run}``. A claim
    that every network holds, or that several refute, is left out."""
    combined = {line["id"]: line for line in lines if "/" not in line["id"]}
    members = set(main) | set(main.values())
    out = {}
    for cid, what in numbers_of(lines).items():
        agree = [
            sub
            for sub in lines
            if sub["id"].startswith(f"{cid}/")
            and sub["id"].partition("/")[2] in members
            and sub["verdict"] == combined[cid]["verdict"]
        ]
        if len(agree) == 1 and agree[0]["id"] == f"{cid}/{what}":
            out[cid] = what
    return out


def interval_side(low, high, reference: float = 0.0) -> str:
    """Where an interval lies against ``reference``: ``"above"`` (entirely), ``"below"``
    (entirely) or ``"across"`` (touching or straddling it, or missing)."""
    if finite_or_none(low) is None or finite_or_none(high) is None:
        return "across"
    return "above" if low > reference else "below" if high < reference else "across"
