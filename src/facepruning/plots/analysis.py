"""Figures of notebook 04 (analysis): curves and forests with 95% intervals (the tables of
``facepruning.analysis``), the width claim's nulls, filters per layer group, descriptor sizes and
the tolerance selection.

Criteria and runs are named by the caller: the functions that draw one curve or row per run take
a ``labels`` mapping (key -> display text), read before :func:`.style.label`'s networks, stages
and metrics. Importing this module applies the figures' theme (:func:`.style.apply_theme`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker

from . import style
from .style import (
    METRIC_LABELS,
    OKABE_ITO,
    REFERENCE,
    STAGE_LABEL,
    STAGE_MARKER,
    STAGE_STYLE,
    label,
    palette,
)

__all__ = [
    "change_curves",
    "interval_curves",
    "criteria_curves",
    "interval_forest",
    "null_comparison",
    "layer_bars",
    "descriptor_sizes",
    "tolerance_selection",
]

style.apply_theme()


def _yerr(low, high, centre) -> np.ndarray:
    """Matplotlib's ``yerr`` (or ``xerr``) for intervals [low, high] around ``centre``: a
    2 x n array of distances below and above (numbers or columns alike)."""
    ends = np.vstack([np.atleast_1d(np.asarray(low, dtype=float)),
                      np.atleast_1d(np.asarray(high, dtype=float))])  # fmt: skip
    return np.abs(ends - np.atleast_1d(np.asarray(centre, dtype=float)))


def _stage_lines(ax, frame: pd.DataFrame, x: str, metric: str, color, label: str = "") -> None:
    """Pruned (solid) and fine-tuned (dashed) curves from the original point; final as a star."""
    for stage in ("pruned", "finetuned"):
        rows = frame[frame["stage"].isin(["original", stage])].sort_values([x, "step"])
        rows = rows[rows[metric].notna()]
        if len(rows) >= 2:
            ax.plot(
                rows[x],
                rows[metric],
                STAGE_STYLE[stage],
                color=color,
                marker=STAGE_MARKER[stage],
                ms=4,
                label=f"{label} {STAGE_LABEL[stage]}".strip(),
            )
    final = frame[(frame["stage"] == "final") & frame[metric].notna()]
    if len(final):
        ax.plot(
            final[x],
            final[metric],
            "*",
            color=color,
            ms=10,
            mec="black",
            mew=0.5,
            label=f"{label} final fine-tuning".strip(),
        )


def _grid(
    metrics: Sequence[str], keys: Sequence, *, cell: tuple[float, float, float]
) -> tuple[plt.Figure, np.ndarray, dict]:
    """The grid of :func:`interval_curves`: one row per metric, one column per key (columns share
    x, rows share y), and a colour per key. ``cell`` is (width per column, height
    per row, extra height for the legend and title), in inches."""
    width, height, extra = cell
    fig, axes = plt.subplots(
        len(metrics),
        len(keys),
        figsize=(max(6.0, width * len(keys) + 0.6), height * len(metrics) + extra),
        squeeze=False,
        sharex="col",
        sharey="row",
    )
    return fig, axes, palette(keys)


def _label_cell(
    axes: np.ndarray, i: int, j: int, *, key, ylabel: str, xlabel: str, invert_x: bool
) -> None:
    """Labels of the drawn cell ``axes[i][j]`` of a :func:`_grid`: the column's ``key`` (through
    :func:`.style.label`) above the top row, ``ylabel`` in the first column, ``xlabel`` under the
    bottom row, and x inverted once per column (the rows share it)."""
    ax = axes[i][j]
    if i == 0:
        ax.set_title(label(key))
    if j == 0:
        ax.set_ylabel(ylabel)
    if i == len(axes) - 1:
        ax.set_xlabel(xlabel)
    if invert_x and i == 0:
        ax.invert_xaxis()


def tolerance_selection(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    tolerance: float,
    selected: Mapping[str, pd.Series | None],
    intervals: Mapping[str, Sequence[float] | None] | None = None,
    x: str = "params",
    x_scale: float = 1e6,
    xlabel: str = "parameters (millions)",
    references: Mapping[str, float] | None = None,
    metric_labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Metric against network size with the tolerance band above the original value (from the
    original to original + ``tolerance``: the rule is one-sided, a lower EER always passes), the
    selected row of each metric ringed, with its 95% interval where ``intervals`` gives one
    (``{metric: [low, high]}``), and vertical ``references`` (``{label: x value}``)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 5.2), squeeze=False)
    frame = history.copy()
    frame["_x"] = frame[x] / x_scale
    for ax, metric in zip(axes[0], metrics, strict=True):
        _stage_lines(ax, frame, "_x", metric, OKABE_ITO[0])
        ref = float(frame.loc[frame["stage"] == "original", metric].iloc[0])
        ax.axhspan(
            ref,
            ref + tolerance,
            color=OKABE_ITO[6],
            alpha=0.3,
            lw=0,
            label=f"tolerance (original + {tolerance:g})",
        )
        ax.axhline(ref, color="grey", lw=0.8, ls=":", label="original network")
        for k, (name, value) in enumerate((references or {}).items()):
            ax.axvline(value / x_scale, color=OKABE_ITO[k + 1], lw=1, ls="-.", label=name)
        row = selected.get(metric)
        if row is not None:
            ax.plot(
                row[x] / x_scale,
                row[metric],
                "o",
                ms=14,
                mfc="none",
                mec=OKABE_ITO[3],
                mew=2,
                label=f"selected: {label(row['stage'])}, step {int(row['step'])}",
            )
            ends = (intervals or {}).get(metric)
            if ends is not None:
                err = _yerr(ends[0], ends[1], row[metric])
                ax.errorbar(row[x] / x_scale, row[metric], yerr=err, fmt="none",
                            ecolor=OKABE_ITO[3], elinewidth=2, capsize=5,
                            label="its 95% interval")  # fmt: skip
        ax.invert_xaxis()
        name = (metric_labels or {}).get(metric, metric)
        ax.set(xlabel=xlabel, ylabel=name.split(",")[0], title=name)  # the title says the rest
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# figures with identity-bootstrap intervals (tables of analysis.interval_table)
# --------------------------------------------------------------------------------------------
def _band_line(
    ax, rows: pd.DataFrame, x: str, color, stage: str, label: str, band: str = "fill", **kw
) -> None:
    """One curve of ``rows`` (columns ``x``, estimate, low, high) with its interval, as a shaded
    band (``band="fill"``), as error bars (``"bars"``) or not at all (``"none"``)."""
    rows = rows.sort_values([x, "step"], kind="mergesort")
    ax.plot(
        rows[x],
        rows["estimate"],
        kw.pop("ls", STAGE_STYLE[stage]),
        marker=kw.pop("marker", STAGE_MARKER[stage]),
        ms=4,
        color=color,
        label=label,
        **kw,
    )
    if rows["low"].notna().any() and band == "fill":
        ax.fill_between(rows[x], rows["low"], rows["high"], color=color, alpha=0.15, lw=0)
    elif rows["low"].notna().any() and band == "bars":  # a reference drawn over other bands
        err = _yerr(rows["low"], rows["high"], rows["estimate"])
        ax.errorbar(rows[x], rows["estimate"], yerr=np.nan_to_num(err), fmt="none",
                    ecolor=color, elinewidth=0.8, capsize=2)  # fmt: skip


def _chain_rows(frame: pd.DataFrame, stage: str) -> pd.DataFrame:
    return frame[frame["stage"].isin(["original", stage]) & frame["estimate"].notna()]


def interval_curves(
    table: pd.DataFrame,
    *,
    metrics: Sequence[str],
    runs: Mapping[str, str],
    controls: Mapping[str, str] | None = None,
    x: str = "filters_removed_pct",
    x_scale: float = 1.0,
    xlabel: str | None = None,
    tolerance: Mapping[str, float] | None = None,
    invert_x: bool = False,
    title: str = "",
) -> plt.Figure:
    """Pruning curves with 95% interval bands: one column per entry of ``runs`` (``{column
    title: run}``), one row per metric.

    ``table`` is :func:`facepruning.analysis.interval_table` (run, step, stage, ``x``, metric,
    estimate, low, high). In each cell: the run pruned (solid, circles) and fine-tuned (dashed,
    squares) from the original point, the final fine-tuning as a star with its interval, the
    control of ``controls`` (``{column title: control run}``, fine-tuned, grey dash-dot), the
    original level (dotted) and, for metrics of ``tolerance``, the band original + tolerance.
    """
    keys = list(runs)
    fig, axes, colors = _grid(metrics, keys, cell=(4.2, 2.9, 0.8))
    for j, key in enumerate(keys):
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            rows = table[(table["metric"] == metric)].copy()
            rows["_x"] = rows[x] / x_scale
            mine = rows[rows["run"] == runs[key]]
            if mine.empty:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
                continue
            for stage in ("pruned", "finetuned"):
                _band_line(
                    ax, _chain_rows(mine, stage), "_x", colors[key], stage, STAGE_LABEL[stage]
                )
            final = mine[mine["stage"] == "final"]
            if len(final):
                err = _yerr(final["low"], final["high"], final["estimate"])
                ax.errorbar(
                    final["_x"], final["estimate"], yerr=np.nan_to_num(err), fmt="*", ms=11,
                    color=colors[key], mec="black", mew=0.5, label="final fine-tuning",
                )  # fmt: skip
            control = (controls or {}).get(key)
            crows = rows[rows["run"] == control] if control else rows.iloc[:0]
            if len(crows):
                crows = _chain_rows(crows, "finetuned").copy()
                # the control removes nothing: draw it at the pruned run's share of each step
                at = mine[mine["stage"] != "final"].drop_duplicates("step").set_index("step")["_x"]
                crows["_x"] = crows["step"].map(at)
                crows = crows[crows["_x"].notna()]
                _band_line(ax, crows, "_x", REFERENCE, "finetuned", "control (nothing removed)",
                           band="bars", ls="-.", marker="d")  # fmt: skip
            original = mine[mine["stage"] == "original"]
            if len(original):
                ref = float(original["estimate"].iloc[0])
                ax.axhline(ref, color=REFERENCE, lw=0.9, ls=":", label="original network")
                if tolerance and metric in tolerance:
                    ax.axhspan(ref, ref + tolerance[metric], color=OKABE_ITO[6], alpha=0.3, lw=0,
                               label=f"tolerance (+{tolerance[metric]:g})")  # fmt: skip
            _label_cell(
                axes, i, j, key=key, ylabel=METRIC_LABELS.get(metric, metric),
                xlabel=xlabel or METRIC_LABELS.get(x, x), invert_x=invert_x,
            )  # fmt: skip
    handles = {}
    for ax in axes.flat:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, h)
    fig.tight_layout()
    if handles:
        fig.legend(
            handles.values(), handles.keys(), loc="lower center", ncol=min(4, len(handles)),
            frameon=False, bbox_to_anchor=(0.5, 1.0),
        )  # fmt: skip
    fig.suptitle(title, y=1.0 + 0.75 / fig.get_size_inches()[1], va="bottom")
    return fig


def change_curves(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    ylabel: str,
    x: str = "filters_removed_pct",
    thresholds: Mapping[str, float] | None = None,
    marks: Sequence[Mapping] = (),
    title: str = "",
) -> plt.Figure:
    """Paired changes per step (``frame``: :func:`facepruning.analysis.change_curves` of one
    comparison), one panel per metric, one line per network in its colour with its 95% band,
    zero dotted. ``thresholds`` (``{metric: value}``) draws a claim's tolerance dashed; ``marks``
    ring points read by verdicts: ``{"metric", "x", "y", "text"}`` each, its text beside it, with
    its interval as a black bar when it has ``"low"`` and ``"high"`` and a wider ``"envelope"``
    (``(low, high)``, the leave-one-run-out envelope) as a thin grey bar behind it."""
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5.4 * len(metrics), 4.2), squeeze=False, sharey=True
    )
    archs = list(dict.fromkeys(frame["arch"])) if len(frame) else []
    colors = palette(archs)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for arch in archs:
            rows = frame[(frame["arch"] == arch) & (frame["metric"] == metric)]
            if len(rows):
                _band_line(ax, rows, x, colors[arch], "pruned", label(arch), marker="o")
        ax.axhline(0.0, color=REFERENCE, lw=0.9, ls=":")
        threshold = (thresholds or {}).get(metric)
        if threshold:
            ax.axhline(threshold, color=REFERENCE, lw=1.0, ls="--",
                       label=f"tolerance ({threshold:+g})")  # fmt: skip
        for k, mark in enumerate(m for m in marks if m["metric"] == metric):
            ax.plot(mark["x"], mark["y"], "o", ms=13, mfc="none", mec="black", mew=1.5)
            for ends, color, width in (
                (mark.get("envelope"), REFERENCE, 0.7),  # drawn first: the interval covers it
                ((mark.get("low"), mark.get("high")), "black", 1.4),
            ):
                if ends is not None and all(e is not None and np.isfinite(e) for e in ends):
                    err = _yerr(ends[0], ends[1], mark["y"])
                    ax.errorbar(mark["x"], mark["y"], yerr=err, fmt="none", ecolor=color,
                                elinewidth=width, capsize=4)  # fmt: skip
            # stacked, so that claims read at the same step stay legible
            ax.annotate(mark["text"], (mark["x"], mark["y"]), xytext=(10, 12 + 11 * k),
                        textcoords="offset points", fontsize=8,
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                              "alpha": 0.85})  # fmt: skip
        ax.set(xlabel=METRIC_LABELS.get(x, x), title=METRIC_LABELS.get(metric, metric))
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def criteria_curves(
    table: pd.DataFrame,
    *,
    metric: str,
    runs: Mapping[str, str],
    reference: str,
    stage: str = "pruned",
    xs: Sequence[str] = ("filters_removed_pct", "params_removed_pct"),
    labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Criteria side by side (``runs``: ``{key: run}``, named ``labels[key]``, else with
    :func:`.style.label`): one column per run, its ``stage`` curve of ``metric`` with its 95%
    band in its colour, the ``reference`` key's curve dotted and black in the other columns; one
    row per measure of what was removed (``xs``: share of filters, share of parameters, both
    columns of ``table``, :func:`facepruning.analysis.interval_table`). Criteria that remove
    equal shares of filters can remove very different shares of parameters."""
    colors = palette(list(runs))
    curves = {}
    for key, run in runs.items():
        rows = table[(table["run"] == run) & (table["metric"] == metric)]
        curves[key] = _chain_rows(rows, stage)
    fig, axes = plt.subplots(
        len(xs), len(runs), figsize=(2.9 * len(runs) + 0.6, 2.7 * len(xs) + 0.8),
        squeeze=False, sharey=True, sharex="row",
    )  # fmt: skip
    ref_name = label(reference, labels=labels)
    for j, key in enumerate(runs):
        for i, x in enumerate(xs):
            ax = axes[i][j]
            if key != reference and reference in curves:
                # black, not the reference grey: grey is a criterion's colour (random); dotted,
                # as a criterion's curve may be black too (unnormalised Taylor)
                _band_line(ax, curves[reference], x, "black", stage, ref_name, band="none",
                           lw=1.0, marker="", ls=":")  # fmt: skip
            _band_line(ax, curves[key], x, colors[key], stage, label(key, labels=labels))
            if i == 0:
                ax.set_title(label(key, labels=labels), fontsize=9)
            ax.set_xlabel(METRIC_LABELS.get(x, x), fontsize=8)
    for row in axes:
        row[0].set_ylabel(METRIC_LABELS.get(metric, metric))
    fig.suptitle(f"{title} ({STAGE_LABEL.get(stage, stage)}; dotted black line: {ref_name})")
    fig.tight_layout()
    return fig


def interval_forest(
    frame: pd.DataFrame,
    *,
    label: str,
    xlabel: str | Mapping[str, str],
    reference: float | None = 0.0,
    hue: str | None = None,
    panel: str | None = None,
    labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Estimates with their intervals as horizontal error bars, one line per row of ``frame``
    (columns ``label``, estimate, low, high, optionally ``hue`` for the colour), top to bottom;
    ``reference`` draws a vertical line (e.g. 0 for differences). Row, legend and panel texts go
    through :func:`.style.label` with ``labels`` (the display texts of criteria, runs...); the
    ``hue`` legend sits outside, right of the axes.

    ``panel`` names a column whose values get one panel each, stacked, each with its own x axis
    (e.g. EER and TAR differences, for which "better" points opposite ways); ``xlabel`` may then
    map panel values to x labels, and the panel value titles each panel.
    """
    frame = frame.reset_index(drop=True)
    colors = palette(list(dict.fromkeys(frame[hue])) if hue else [None])
    panels = list(dict.fromkeys(frame[panel])) if panel else [None]
    parts = [frame[frame[panel] == p] if panel else frame for p in panels]
    fig, axes = plt.subplots(
        len(parts),
        1,
        figsize=(6.4, 0.45 * len(frame) + 1.4 * len(parts)),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(part) + 2 for part in parts]},
    )
    for ax, p, part in zip(axes[:, 0], panels, parts, strict=True):
        _forest_panel(ax, part.reset_index(drop=True), label, hue, colors, reference, labels)
        text = xlabel.get(p, "") if isinstance(xlabel, Mapping) else xlabel
        ax.set(xlabel=text, title=style.label(p, labels=labels) if panel else title)
    if panel:
        fig.suptitle(title)
    fig.tight_layout()
    handles = {}
    for ax in axes[:, 0]:
        for h, name in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(name, h)
    if hue and handles:
        fig.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1.0, 0.95),
                   frameon=False, fontsize=8)  # fmt: skip
    return fig


def _forest_panel(
    ax, frame: pd.DataFrame, column: str, hue, colors: dict, reference, labels
) -> None:
    """One panel of :func:`interval_forest`: the rows of ``frame``, top to bottom, named by
    ``column``."""
    y = np.arange(len(frame))[::-1]
    for h in colors:
        sel = (frame[hue] == h).to_numpy() if hue else np.ones(len(frame), bool)
        if not sel.any():
            continue
        f = frame[sel]
        err = _yerr(f["low"], f["high"], f["estimate"])
        ax.errorbar(
            f["estimate"], y[sel], xerr=np.nan_to_num(err), fmt="o", capsize=3,
            color=colors[h], label=None if h is None else label(h, labels=labels),
        )  # fmt: skip
    if reference is not None:
        ax.axvline(reference, color=REFERENCE, lw=0.9, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(frame[column].astype(str).map(lambda key: label(key, labels=labels)))
    ax.set_ylim(-0.7, len(frame) - 0.3)


def null_comparison(
    frame: pd.DataFrame, *, labels: Mapping[str, str] | None = None, title: str = ""
) -> plt.Figure:
    """Observed Spearman rho of every run (dot) against the central 95% of its null (grey bar):
    ``frame`` has columns run, rho, low, high (the null the verdict uses, from
    :func:`facepruning.analysis.width_null_position`) and, when known, ``null_uniform`` and
    ``null_normalised`` (``[low, high]`` of random scores as drawn, and after the layer-wise
    normalisation), drawn as two thinner bars above and below; run names go through
    :func:`.style.label` with ``labels``. A dot right of its grey bar: wider groups lose more
    than its null gives; inside: indistinguishable from it. The legend sits below the axes."""
    frame = frame.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(frame) + 1.5))
    y = np.arange(len(frame))[::-1]
    ax.hlines(y, frame["low"], frame["high"], color=REFERENCE, lw=6, alpha=0.35,
              label="the verdict's null (95%)")  # fmt: skip
    # black and greys only: the networks' and criteria's colours mean those everywhere else
    for column, offset, style_, what in (
        ("null_uniform", 0.22, "solid", "uniform random scores"),
        ("null_normalised", -0.22, "dashed", "random scores, normalised per layer"),
    ):
        if column in frame and frame[column].notna().any():
            bands = np.array([b if isinstance(b, list | tuple) else [np.nan] * 2
                              for b in frame[column]], dtype=float)  # fmt: skip
            ax.hlines(y + offset, bands[:, 0], bands[:, 1], color="black", lw=1.5,
                      linestyles=style_, label=what)  # fmt: skip
    inside = (frame["rho"] >= frame["low"]) & (frame["rho"] <= frame["high"])
    ax.plot(frame["rho"][~inside], y[~inside], "o", color="black", label="observed, outside")
    ax.plot(frame["rho"][inside], y[inside], "o", mfc="white", mec="black",
            label="observed, inside")  # fmt: skip
    ax.axvline(0, color=REFERENCE, lw=0.8, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(frame["run"].astype(str).map(lambda key: label(key, labels=labels)))
    ax.set(
        xlabel="Spearman rho, group width vs share of its channels removed",
        xlim=(-1.05, 1.05),
        ylim=(-0.6, len(frame) - 0.4),
        title=title,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def layer_bars(
    layers: Mapping[str, pd.DataFrame],
    *,
    steps: Sequence[int] | None = None,
    labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Filters per layer group as bars, the way the papers plot layers: one panel per network
    (titled with :func:`.style.label` of its key, read in ``labels`` first, e.g. a run's label;
    groups in network order, input on the left, each named below its bar), the width at the
    start in light grey and the filters left after each step of ``steps`` (default: the middle
    and the last step) overlaid in the network's colour, lighter for the earlier step."""
    fig, axes = plt.subplots(len(layers), 1, figsize=(11, 4.2 * len(layers) + 0.4), squeeze=False)
    colors = palette(list(layers))  # all keys at once: runs of several networks, by network
    for ax, (name, table) in zip(axes[:, 0], layers.items(), strict=True):
        table = table[sorted(table.columns)]
        cols = list(table.columns)
        shown = list(steps) if steps is not None else sorted({cols[len(cols) // 2], cols[-1]})
        shown = [s for s in shown if s in table.columns and s != cols[0]]
        x = np.arange(len(table))
        color = colors[name]
        ax.bar(x, table[cols[0]], color="#DDDDDD", width=0.85, label=f"start (step {cols[0]})")
        for k, step in enumerate(shown):
            share = (k + 1) / len(shown)  # later steps narrower and darker
            ax.bar(x, table[step], width=0.85 - 0.25 * share, color=color,
                   alpha=0.45 + 0.55 * share, label=f"after step {step}")  # fmt: skip
        ax.set(xlim=(-0.6, len(table) - 0.4), ylabel="filters", title=label(name, labels=labels))
        names = [str(g).removeprefix("backbone.") for g in table.index]
        ax.set_xticks(x, names, rotation=90, fontsize=6)
        ax.legend(loc="upper left", fontsize=8, ncol=len(shown) + 1)
    axes[-1][0].set_xlabel("layer group, in network order (input on the left)")
    fig.suptitle(title or "filters per layer group")
    fig.tight_layout()
    return fig


def descriptor_sizes(history: pd.DataFrame, *, col_order: Sequence[str], title: str = ""):
    """Descriptor size against filters removed, one line per network (``arch`` of ``history``,
    pruned rows from the original)."""
    colors = palette(col_order)
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for arch in col_order:
        rows = history[(history["arch"] == arch) & history["stage"].isin(["original", "pruned"])]
        rows = rows.sort_values("step")
        ax.plot(rows["filters_removed_pct"], rows["descriptor_size"], "-o", ms=4,
                color=colors[arch], label=label(arch))  # fmt: skip
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%d"))
    ax.set(
        xlabel=METRIC_LABELS["filters_removed_pct"],
        ylabel="descriptor size (log scale)",
        title=title or "face descriptor size as filters are removed",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
