"""The runs of the analysis: what each pruning run is, its history, layer table and pair scores.

The training and pruning stages leave one set of files per run (``metrics/train/<arch>.json``,
``metrics/prune/<run>.json``, ``<run>_history.csv``, ``<run>_layers.csv``, ``scores/<run>.pt``).
File names only locate a run's files: what a pruning run is (its architecture, criterion, display
label and whether its scores were normalised) is read from the keys :data:`RUN_KEYS` of its
metrics JSON.

- :func:`load_prune_runs` (:class:`PruneRun`), :func:`load_train_runs`, :func:`combined_history`:
  every run's files, one long history table; :func:`check_histories`, :func:`run_inventory`,
  :func:`params_removed_pct`;
- :func:`main_runs`: the run per architecture that stands for the papers' setup;
  :func:`control_runs`: the no-pruning control per architecture;
- :func:`load_scores` (:class:`RunScores`), :func:`check_scores`: every test pair's score at
  every history row; :func:`load_runs_with_scores`: a folder's runs and their scores at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import load_torch, read_json
from ..errors import DataError

__all__ = [
    "run_labels",
    "HISTORY_SUFFIX",
    "LAYERS_SUFFIX",
    "RUN_KEYS",
    "MAIN_CRITERION",
    "CONTROL_CRITERION",
    "ORIGINAL",
    "PruneRun",
    "load_prune_runs",
    "load_runs_with_scores",
    "params_removed_pct",
    "main_runs",
    "control_runs",
    "load_train_runs",
    "combined_history",
    "check_histories",
    "run_inventory",
    "SCORES_KEYS",
    "RunScores",
    "load_scores",
    "check_scores",
]

HISTORY_SUFFIX = "_history.csv"
LAYERS_SUFFIX = "_layers.csv"
#: What every pruning run's metrics JSON must say about the run (written by the prune stage).
RUN_KEYS = ("run", "arch", "criterion", "normalize_scores", "scores_normalised", "label")
#: The papers' criterion: a network's main run (:func:`main_runs`) and the reference of the
#: criteria comparison use it.
MAIN_CRITERION = "taylor_activation"
#: The criterion of a no-pruning control run (same schedule, nothing removed).
CONTROL_CRITERION = "none"
#: The (step, stage) of every history's first row, the unpruned network.
ORIGINAL = (0, "original")


@dataclass
class PruneRun:
    """One pruning run: its name, what it is (from its metrics JSON), history and layer table.

    ``key`` is the run's name (``<run>`` of its file names); ``label`` is its display label, as
    the prune stage wrote it (the criterion's variant, e.g. ``"taylor_activation
    (unnormalized)"``); tables keep it in their column ``variant``.
    """

    key: str
    arch: str
    criterion: str
    history: pd.DataFrame
    summary: dict = field(default_factory=dict)
    layers: pd.DataFrame | None = None  # rows: groups in network order; columns: steps (int)
    normalize_scores: bool = True
    label: str = field(kw_only=True)
    #: whether the loop divided the scores by their group's norm: ``normalize_scores`` and a
    #: criterion that ranks (random scores never are); C7's null follows it
    scores_normalised: bool = field(default=True, kw_only=True)

    @property
    def variant(self) -> str:
        """The display label under its older name (the tables' column ``variant``)."""
        return self.label


def run_labels(runs: Mapping[str, PruneRun]) -> dict[str, str]:
    """What figures and sentences call each run's variant: the prune stage's ``display_label``
    (e.g. "Taylor (activations), unnormalised"), keyed by the variant, by the run name and by
    the run name without its network (so ``style.label("squeezenet-random", labels=...)`` reads
    "SqueezeNet, random")."""
    names: dict[str, str] = {}
    for key, run in runs.items():
        shown = run.summary.get("display_label")
        if not isinstance(shown, str) or not shown:
            raise DataError(
                f"run {key!r} has no display_label in its metrics JSON: rerun its stage "
                f"(dvc repro -f {_stage_of(key)})"
            )
        names[run.label] = shown
        names[key.partition("-")[2] or key] = shown
    return names


def _stage_of(key: str) -> str:
    """The dvc.yaml stage that writes run ``key``: ``control@<arch>`` or ``prune@<run>``."""
    arch, _, rest = key.partition("-")
    return f"control@{arch}" if rest == "control" else f"prune@{key}"


def _run_description(path: Path, key: str) -> dict:
    """:data:`RUN_KEYS` (``run``, ``arch``, ``criterion``, ``normalize_scores``, ...) of the
    run whose metrics JSON is ``path``, checked; the whole JSON is returned."""
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
    for name in ("criterion", "label"):
        if not isinstance(summary[name], str) or not summary[name]:
            raise DataError(
                f"{path}: {name} must be a non-empty string, not {summary[name]!r}: {rerun}"
            )
    for name in ("normalize_scores", "scores_normalised"):
        if not isinstance(summary[name], bool):
            raise DataError(f"{path}: {name} must be true or false, not {summary[name]!r}")
    return summary


def _load_run(folder: Path, key: str) -> PruneRun:
    summary = _run_description(folder / f"{key}.json", key)
    path = folder / f"{key}{HISTORY_SUFFIX}"
    history = pd.read_csv(path)
    missing = {"step", "stage", "filters_removed_pct", "params"} - set(history.columns)
    if missing:
        raise DataError(f"{path} lacks the columns {sorted(missing)}")
    arch, criterion, normalized = summary["arch"], summary["criterion"], summary["normalize_scores"]
    label = summary["label"]
    for name, value in [
        ("normalize_scores", normalized),
        ("variant", label),
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
    return PruneRun(
        key,
        arch,
        criterion,
        history,
        summary,
        layers,
        normalized,
        label=label,
        scores_normalised=summary["scores_normalised"],
    )


def load_prune_runs(prune_dir: str | os.PathLike) -> dict[str, PruneRun]:
    """Every pruning run under ``prune_dir`` (found by its ``<run>_history.csv``), sorted by name.

    What each run is comes from its ``<run>.json`` (keys :data:`RUN_KEYS`); a run whose JSON is
    missing or lacks them raises :class:`DataError` naming the file. The history gains the
    columns ``run``, ``arch``, ``criterion``, ``variant`` (the run's ``label``) and
    ``normalize_scores`` in front. An empty or missing folder gives an empty dict: the caller
    decides what that means.
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


def control_runs(runs: Mapping[str, PruneRun]) -> dict[str, str]:
    """The no-pruning control run per architecture (criterion ``none``), ``{arch: run name}``."""
    return {r.arch: k for k, r in sorted(runs.items()) if r.criterion == CONTROL_CRITERION}


def load_runs_with_scores(
    prune_dir: str | os.PathLike, scores_dir: str | os.PathLike
) -> tuple[dict[str, PruneRun], dict[str, RunScores]]:
    """The pruning runs under ``prune_dir`` (:func:`load_prune_runs`, histories checked by
    :func:`check_histories`) and the pair scores of those that have a ``<run>.pt`` under
    ``scores_dir`` (:func:`load_scores`); a run without one is left out of the scores."""
    runs = load_prune_runs(prune_dir)
    check_histories(runs)
    scores = {k: load_scores(p) for k in runs if (p := Path(scores_dir, f"{k}.pt")).is_file()}
    return runs, scores


def params_removed_pct(history: pd.DataFrame) -> pd.Series:
    """Each row's share of the parameters removed (%), against the run's ``original`` row."""
    full = history.loc[history["stage"] == "original", "params"]
    if full.empty:
        return pd.Series(np.nan, index=history.index)
    return 100 * (1 - history["params"] / float(full.iloc[0]))


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
                "criterion": r.label,
                "steps": int(h["step"].max()),
                "filters removed (%)": round(float(h["filters_removed_pct"].max()), 1),
                "parameters": f"{int(h['params'].iloc[0]):,} -> {int(h['params'].iloc[-1]):,}",
                "layer table": r.layers is not None,
                "pair scores": key in scores,
            }
        )
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


#: The keys of a run's ``scores/<run>.pt`` (written by the prune stage).
SCORES_KEYS = ("identities", "rows", "pairs", "scores")


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
