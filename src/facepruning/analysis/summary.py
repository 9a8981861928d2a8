"""The analysis' summary: ``metrics/analysis.json`` (compact), its headline and its CSV tables.

- :func:`summarize` (:class:`Summary`): everything the analysis reports, per network, criterion
  and claim, with intervals; :func:`headline`: the numbers ``dvc metrics show`` lists;
  :func:`write_summary`: the files, byte-deterministically;
- the tables: :func:`baseline_table`, :func:`layer_width_table`, :func:`layer_steps_table`,
  :func:`curve_table`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import statistics as st
from ..artifacts import write_csv, write_json
from .claims import _claims_compact
from .criteria import criteria_comparison
from .intervals import (
    INTERVAL_METRICS,
    _ci,
    _Replicates,
    finite_or_none,
    fmt_interval,
    interval_table,
)
from .runs import ORIGINAL, PruneRun, RunScores, control_runs, main_runs
from .selection import largest_removal_within_tolerance, squeezerfacenet_pick

__all__ = [
    "SCHEMA",
    "METRIC_KEYS",
    "Summary",
    "summarize",
    "headline",
    "write_summary",
    "baseline_table",
    "layer_width_table",
    "layer_steps_table",
    "curve_table",
]

#: Version of the layout :func:`summarize` writes; ``readme`` and its test read it.
SCHEMA = 3
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


def _final_row(history: pd.DataFrame) -> pd.Series:
    """The last ``final`` row, else the last row (a run without a final fine-tuning)."""
    final = history[history["stage"] == "final"]
    return (final if len(final) else history).iloc[-1]


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
    if run.key in reps.scores:  # the main run's own test identities (one fold, one training run)
        entry["test_identities"] = int(reps.counts.shape[1])
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
    evidence: Mapping | None = None,
) -> Summary:
    """Everything the analysis reports, from the loaded runs, their scores and ``claims``
    (:func:`judge_claims`). ``compact`` (``metrics/analysis.json``, :data:`SCHEMA`)::

        schema, eer_tolerance, main_runs {arch: run}
        networks.<arch>: run, control, test_identities, converged, filters_removed_pct,
            holds_to_pct,
            params / macs / descriptor: [original, final],
            t1_eer / t5_eer / t1_tar_far1: {original, original_ci, final, final_ci},
                and for t1_eer also vs_control, vs_control_ci
        criteria: metric, stage, reference, shares,
            variants.<variant>: {run, mean, diff, diff_ci}   (diff: minus the reference)
        squeezerfacenet: run, step, stage, metric, params, params_saved_pct,
            filters_removed_pct, eer, eer_ci
        claims.<C1..C7>: papers (what they report), verdict, estimate, ci, metric, threshold,
            and for C1-C6 what the
            interval rests on: identities, training_runs, run_share (numbers_of: whose numbers)
        evidence: ``evidence`` as given (notebook 04: interval_method, resamples, coverage, and
            per network the test_identities, folds, seeds and training_runs of its claims)

    ``*_ci`` are ``[low, high]`` (``level`` identity-bootstrap percentile intervals; None
    without scores); ``dvc metrics show`` lists :func:`headline` of this, not this.
    ``vs_control`` is the final row minus the control's row at the same step and stage, paired
    (for every metric in the ``networks`` table).
    ``tables``: ``intervals`` (:func:`interval_table`), ``networks``, ``criteria``, ``claims``,
    ``layers`` (:func:`layer_width_table`); for ``dvc plots``: per network ``curves_<arch>``
    (:func:`curve_table`) and ``layers_<arch>`` (:func:`layer_steps_table`), and
    ``criteria_curves`` (one column per SqueezeNet run, named by its criterion: its EER at the
    matched shares).
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
        **({"evidence": dict(evidence)} if evidence is not None else {}),
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
        # one network: its runs named by their criterion alone, which a plot legend keeps whole
        wide.columns = [str(run).split("-", 1)[-1] for run in wide.columns]
        tables["criteria_curves"] = wide.sort_index().reset_index()
    return Summary(compact, tables)


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
                        "variant": run.label,
                        "layer": i,
                        "group": group,
                        "step": int(step),
                        "channels": int(channels),
                        "width": int(row.iloc[0]),
                    }
                )
    return pd.DataFrame(out)


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
