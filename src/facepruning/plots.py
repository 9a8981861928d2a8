"""Figures of the notebooks: one function per kind of figure, each returning a matplotlib Figure.

The functions take plain tables (pandas DataFrames of histories, arrays of scores) so that the
notebooks decide what to show and this module only decides how it looks. :func:`save_figure`
writes them byte for byte reproducibly (no version strings or dates in the file), so an
unchanged figure leaves DVC outputs and git unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless default; Jupyter sets its own

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import ticker  # noqa: E402

from .artifacts import atomic_path  # noqa: E402

__all__ = [
    "save_figure",
    "training_curves",
    "roc_curves",
    "score_distributions",
    "pruning_curves",
    "layer_heatmap",
    "taylor_check",
    "metric_grid",
    "layer_heatmaps",
    "width_order_scatter",
    "tolerance_selection",
    "compare_curves",
    "OKABE_ITO",
    "METRIC_LABELS",
    "LABELS",
    "label",
    "interval_curves",
    "criteria_curves",
    "interval_forest",
    "null_comparison",
    "layer_bars",
    "descriptor_sizes",
]

#: Okabe & Ito's colour-blind-safe palette (black left out: it marks references).
OKABE_ITO = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
]
sns.set_theme(
    context="notebook",
    style="whitegrid",
    palette=OKABE_ITO,
    rc={"legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.titlesize": 11},
)
STAGE_STYLE = {"pruned": "-", "finetuned": "--", "original": ":", "final": "-."}
STAGE_MARKER = {"pruned": "o", "finetuned": "s", "original": "o", "final": "*"}
STAGE_LABEL = {"pruned": "pruned", "finetuned": "pruned + fine-tuned"}
#: Colour of reference marks (original level, tolerance band, controls).
REFERENCE = "#555555"
#: Words for the metric keys of the histories.
METRIC_LABELS = {
    "t1/eer": "EER, 1-image templates",
    "t5/eer": "EER, 5-image templates",
    "t1/tar@far=0.01": "TAR at FAR = 1%, 1-image",
    "val/acc": "identification accuracy",
    "descriptor_size": "descriptor size",
    "filters_removed_pct": "filters removed (%)",
    "step": "pruning step",
    "params": "parameters (millions)",
    "macs": "MACs per image (millions)",
}


#: Readable names of the keys that networks, criteria and stages are stored under (and the
#: metric keys of :data:`METRIC_LABELS`); :func:`label` reads them.
LABELS = {
    "squeezenet": "SqueezeNet",
    "mobilenet_v2": "MobileNetV2",
    "resnet50": "ResNet50",
    "taylor_activation": "Taylor (activations)",
    "taylor_weight": "Taylor (weights)",
    "l1_norm": "L1 norm",
    "random": "random",
    "none": "control (nothing removed)",
    "control": "control (nothing removed)",
    "original": "original network",
    "pruned": "pruned",
    "finetuned": "pruned + fine-tuned",
    "final": "final fine-tuning",
    **METRIC_LABELS,
}
#: How run names and variant labels mark a criterion whose scores were not normalised.
_UNNORMALISED = (" (unnormalised)", "_unnormalized", "_unnormalised")


def label(*keys) -> str:
    """Readable text for stored keys, joined by ", ": a network (``"resnet50"`` ->
    "ResNet50"), a criterion or variant (``"taylor_activation (unnormalised)"`` -> "Taylor
    (activations), unnormalised"), a stage, a metric, or a run name ``<network>-<criterion>``
    (``"squeezenet-taylor_activation_unnormalized"`` -> "SqueezeNet, Taylor (activations),
    unnormalised"). Anything else, readable text included, comes back unchanged, so labelling
    twice does no harm."""
    return ", ".join(_label(str(key)) for key in keys)


def _label(key: str) -> str:
    if key in LABELS:
        return LABELS[key]
    for suffix in _UNNORMALISED:
        if key.endswith(suffix) and key != suffix:
            return f"{_label(key.removesuffix(suffix))}, unnormalised"
    arch, dash, rest = key.partition("-")
    if dash and rest and arch in LABELS:
        return f"{LABELS[arch]}, {_label(rest)}"
    return key


def _palette(keys: Sequence) -> dict:
    """One Okabe-Ito colour per key, in order (cycling past seven)."""
    return {k: OKABE_ITO[i % len(OKABE_ITO)] for i, k in enumerate(keys)}


#: Metadata that would make the same figure differ between saves, matplotlib versions or
#: machines (version strings, creation dates), blanked per format.
_REPRODUCIBLE_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}


def save_figure(fig: plt.Figure, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Save ``fig`` atomically (the parent folder is created), byte for byte reproducibly.

    The format follows the suffix (``.pdf``, ``.svg``; PNG for anything else). Version strings
    and dates are left out of the file and SVG element ids come from a fixed salt, so the same
    figure always gives the same bytes (what DVC and git see as "unchanged").
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = suffix if suffix in _REPRODUCIBLE_METADATA else "png"
    with atomic_path(path) as tmp, plt.rc_context({"svg.hashsalt": "facepruning"}):
        fig.savefig(
            tmp,
            dpi=dpi,
            bbox_inches="tight",
            format=fmt,
            metadata=_REPRODUCIBLE_METADATA[fmt],
        )


def training_curves(history: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Loss and accuracy per epoch (train and validation) with the learning rate below."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(history["epoch"], history["train_loss"], label="train")
    axes[0].plot(history["epoch"], history["val_loss"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy (log scale)", title="loss", yscale="log")
    axes[1].plot(history["epoch"], history["train_acc"], label="train")
    axes[1].plot(history["epoch"], history["val_acc"], label="validation")
    axes[1].set(xlabel="epoch", ylabel="top-1", title="identification accuracy", ylim=(0, 1.02))
    axes[2].step(history["epoch"], history["lr"], where="post")
    axes[2].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="plateau schedule")
    for ax in axes[:2]:
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def roc_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title="") -> plt.Figure:
    """ROC curves, TAR against FAR on a log axis, one per label: ``{label: (far, tar)}``."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for label, (far, tar) in curves.items():
        far = np.asarray(far)
        keep = far > 0
        ax.plot(far[keep], np.asarray(tar)[keep], label=label)
    chance = np.logspace(-4, 0, 200)  # TAR = FAR: a curve on the log FAR axis, not a segment
    ax.plot(chance, chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set(
        xscale="log",
        xlim=(1e-3, 1),
        ylim=(0, 1.02),
        xlabel="false accept rate",
        ylabel="true accept rate",
        title=title or "ROC",
    )
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def score_distributions(
    scores: np.ndarray, genuine: np.ndarray, *, threshold: float | None = None, title: str = ""
) -> plt.Figure:
    """Histograms of genuine and impostor cosine similarities."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    scores, genuine = np.asarray(scores), np.asarray(genuine, dtype=bool)
    bins = np.linspace(scores.min(), scores.max(), 40)
    ax.hist(scores[~genuine], bins=bins, density=True, alpha=0.6, label="impostor")
    ax.hist(scores[genuine], bins=bins, density=True, alpha=0.6, label="genuine")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label="EER threshold")
    ax.set(xlabel="cosine similarity", ylabel="density", title=title or "score distributions")
    ax.legend()
    fig.tight_layout()
    return fig


def pruning_curves(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    x: str = "filters_removed_pct",
    hue: str | None = None,
    title: str = "",
) -> plt.Figure:
    """Metrics against ``x`` (the share of filters removed; ``"step"`` for a run that removes
    nothing), pruned (solid) and fine-tuned (dashed), from the original network.

    ``hue`` names a column (architecture, criterion) drawn in separate colours.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    groups = history.groupby(hue) if hue else [("", history)]
    palette = _palette([g for g, _ in groups])
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, frame in groups:
            for stage in ("pruned", "finetuned"):
                rows = frame[frame["stage"].isin(["original", stage])].sort_values(x)
                if rows[metric].notna().sum() < 2:
                    continue
                text = f"{label(key)}, {STAGE_LABEL[stage]}" if hue else STAGE_LABEL[stage]
                ax.plot(
                    rows[x],
                    rows[metric],
                    STAGE_STYLE[stage],
                    color=palette[key],
                    marker=STAGE_MARKER[stage],
                    ms=4,
                    label=text,
                )
        name = METRIC_LABELS.get(metric, metric)
        ax.set(xlabel=METRIC_LABELS.get(x, x.replace("_", " ")), ylabel=name, title=name)
        if x == "step":
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_heatmap(layers: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Share of each group's channels left (rows: groups in network order; columns: steps)."""
    fraction = layers.div(layers.iloc[:, 0], axis=0)
    height = max(3.0, 0.16 * len(fraction))
    fig, ax = plt.subplots(figsize=(min(14, 3 + 0.35 * fraction.shape[1]), height))
    sns.heatmap(
        fraction,
        ax=ax,
        vmin=0,
        vmax=1,
        cmap="viridis",
        cbar_kws={"label": "share of channels left"},
        yticklabels=len(fraction) <= 60,
    )
    ax.set(xlabel="pruning step", ylabel="layer group", title=title or "filters left per layer")
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    return fig


def taylor_check(
    predicted: np.ndarray,
    measured: np.ndarray,
    scores: np.ndarray,
    *,
    group: str,
    criterion: str,
) -> plt.Figure:
    """Notebook 03's worked example (:func:`facepruning.pruning.taylor_prediction_check`).

    Left: the first-order prediction of the loss change against the change measured, one point
    per zeroed channel of ``group``, with the dotted diagonal of a perfect estimate. Right:
    ``criterion``'s scores of all the group's channels, sorted (the left end goes first); the
    criterion is named with :func:`label`.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    lim = np.abs(np.r_[predicted, measured]).max() * 1.05
    axes[0].scatter(predicted, measured, s=12)
    axes[0].plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls=":")
    axes[0].set(
        xlabel="first-order prediction of the loss change",
        ylabel="measured loss change",
        title=f"{group}: zeroing one channel at a time",
    )
    axes[1].plot(np.sort(scores), marker=".", lw=0.8)
    axes[1].set(
        xlabel="channel (sorted by score)",
        ylabel=f"{label(criterion)} score",
        title="scores on one mini-batch; the left end goes first",
    )
    fig.tight_layout()
    return fig


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


def _per_column(value, name: str, default):
    """``value[name]`` when ``value`` maps x columns to settings, else ``value`` itself."""
    return value.get(name, default) if isinstance(value, Mapping) else value


def _x_label(xlabel: str | Mapping[str, str] | None, name: str) -> str:
    if isinstance(xlabel, Mapping):
        return xlabel.get(name, name.replace("_", " "))
    return xlabel or name.replace("_", " ")


def _grid(
    metrics: Sequence[str], keys: Sequence, *, cell: tuple[float, float, float], sharex="col"
) -> tuple[plt.Figure, np.ndarray, dict]:
    """The grid of :func:`metric_grid` and :func:`interval_curves`: one row per metric, one
    column per key (rows share y), and a colour per key. ``cell`` is (width per column, height
    per row, extra height for the legend and title), in inches."""
    width, height, extra = cell
    fig, axes = plt.subplots(
        len(metrics),
        len(keys),
        figsize=(max(6.0, width * len(keys) + 0.6), height * len(metrics) + extra),
        squeeze=False,
        sharex=sharex,
        sharey="row",
    )
    return fig, axes, _palette(keys)


def _label_cell(
    axes: np.ndarray, i: int, j: int, *, key, ylabel: str, xlabel: str, invert_x: bool, shared=True
) -> None:
    """Labels of the drawn cell ``axes[i][j]`` of a :func:`_grid`: the column's ``key`` (through
    :func:`label`) above the top row, ``ylabel`` in the first column, ``xlabel`` under the bottom
    row (under every row when rows do not share x), and x inverted once per shared column."""
    ax = axes[i][j]
    if i == 0:
        ax.set_title(label(key))
    if j == 0:
        ax.set_ylabel(ylabel)
    if i == len(axes) - 1 or not shared:
        ax.set_xlabel(xlabel)
    if invert_x and (i == 0 or not shared):
        ax.invert_xaxis()


def _grid_cell(
    ax, frame: pd.DataFrame, metric: str, color, band: Mapping[str, float] | None
) -> bool:
    """One cell of :func:`metric_grid` (x in ``frame["_x"]``): the stage curves, the original
    value dotted and the tolerance band; False (and a note) when ``metric`` was not measured."""
    if metric not in frame or frame[metric].notna().sum() == 0:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        return False
    _stage_lines(ax, frame, "_x", metric, color)
    original = frame[frame["stage"] == "original"]
    if len(original) and pd.notna(original[metric].iloc[0]):
        ref = float(original[metric].iloc[0])
        ax.axhline(ref, color="grey", lw=0.8, ls=":")
        if band and metric in band:
            ax.axhspan(ref - band[metric], ref + band[metric], color="grey", alpha=0.15, lw=0)
    return True


def _grid_legend(fig: plt.Figure, axes: np.ndarray, n_cols: int, title: str) -> None:
    """The shared line-style legend above :func:`metric_grid` (when anything was drawn), and the
    title above that; lays the figure out first."""
    drawn = any(ax.get_legend_handles_labels()[0] for ax in axes.flat)
    fig.tight_layout()
    if drawn:
        line = {"color": "black", "ms": 4}
        handles = [
            plt.Line2D([], [], ls="-", marker="o", label="pruned", **line),
            plt.Line2D([], [], ls="--", marker="s", label="pruned + fine-tuned", **line),
            plt.Line2D([], [], color="black", ls="", marker="*", ms=10, label="final fine-tuning"),
            plt.Line2D([], [], color="grey", ls=":", label="original network"),
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=2 if n_cols == 1 else 4,
            frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )
    height = fig.get_size_inches()[1]
    fig.suptitle(title, y=1.0 + (0.75 if drawn and n_cols == 1 else 0.4) / height, va="bottom")


def metric_grid(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    x: str | Sequence[str] = "filters_removed_pct",
    col: str = "arch",
    col_order: Sequence[str] | None = None,
    metric_labels: Mapping[str, str] | None = None,
    xlabel: str | Mapping[str, str] | None = None,
    x_scale: float | Mapping[str, float] = 1.0,
    invert_x: bool = False,
    band: Mapping[str, float] | None = None,
    title: str = "",
) -> plt.Figure:
    """A grid of pruning curves: one row per metric, one column per value of ``col``.

    Pruned is solid, pruned + fine-tuned dashed, the last step after the final fine-tuning a star.
    A dotted line marks the original network's value; ``band`` (``{metric: tolerance}``) shades
    original +- tolerance. ``x_scale`` divides x (e.g. 1e6 for millions of parameters).
    ``x`` may be one column per row (e.g. parameters for some rows, MACs for others); ``x_scale``
    and ``xlabel`` may then map column names to values.
    """
    xs = [x] * len(metrics) if isinstance(x, str) else list(x)
    if len(xs) != len(metrics):
        raise ValueError(f"{len(xs)} x columns for {len(metrics)} metrics")
    shared = len(set(xs)) == 1
    keys = list(col_order) if col_order is not None else sorted(history[col].unique())
    labels = dict(metric_labels or {})
    fig, axes, colors = _grid(
        metrics, keys, cell=(4.0, 2.6, 0.6), sharex="col" if shared else False
    )
    for j, key in enumerate(keys):
        frame = history[history[col] == key].copy()
        for i, metric in enumerate(metrics):
            frame["_x"] = frame[xs[i]] / _per_column(x_scale, xs[i], 1.0)
            if not _grid_cell(axes[i][j], frame, metric, colors[key], band):
                continue
            _label_cell(
                axes, i, j, key=key, ylabel=labels.get(metric, metric),
                xlabel=_x_label(xlabel, xs[i]), invert_x=invert_x, shared=shared,
            )  # fmt: skip
    _grid_legend(fig, axes, len(keys), title)
    return fig


def layer_heatmaps(layers: Mapping[str, pd.DataFrame], *, title: str = "") -> plt.Figure:
    """:func:`layer_heatmap` for several networks side by side (share of channels left); the
    row labels carry each group's starting width."""
    n = len(layers)
    rows = max(len(t) for t in layers.values())
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(5.6 * n + 1.2, max(3.5, 0.2 * rows + 1.4)),
        squeeze=False,
        layout="constrained",
    )
    for ax, (name, table) in zip(axes[0], layers.items(), strict=True):
        table = table[sorted(table.columns)]
        fraction = table.div(table.iloc[:, 0], axis=0)
        fraction.index = [
            f"{str(g).removeprefix('backbone.')} ({w})"
            for g, w in zip(fraction.index, table.iloc[:, 0], strict=True)
        ]
        sns.heatmap(fraction, ax=ax, vmin=0, vmax=1, cmap="viridis", cbar=False, yticklabels=True)
        ax.set(xlabel="pruning step", ylabel="", title=f"{label(name)} ({len(table)} groups)")
        ax.tick_params(axis="y", labelsize=8)
    axes[0][0].set_ylabel("layer group (width at the start), input at the top")
    fig.colorbar(
        axes[0][0].collections[0], ax=axes[0].tolist(), label="share of channels left", shrink=0.8
    )
    fig.suptitle(title or "channels left per layer group")
    return fig


def width_order_scatter(
    tables: Mapping[str, pd.DataFrame],
    summaries: Mapping[str, Mapping[str, float]],
    *,
    title: str = "",
) -> plt.Figure:
    """Group width against share removed (top) and first losing step (bottom), one column per
    network; ``tables`` from ``analysis.width_order``, ``summaries`` from ``width_rank_summary``.
    """
    n = len(tables)
    fig, axes = plt.subplots(2, n, figsize=(max(5.0, 4.4 * n), 7.0), squeeze=False)
    rng = np.random.default_rng(0)
    for j, (name, table) in enumerate(tables.items()):
        s = summaries[name]
        widths = np.sort(table["width"].unique())
        jitter = 2 ** rng.uniform(-0.12, 0.12, len(table))  # log-x jitter: ties stay visible
        x = table["width"].to_numpy() * jitter
        never = table["never"].to_numpy()
        for i, ax in enumerate(axes[:, j]):
            y = 100 * table["removed_share"] if i == 0 else table["first_step"]
            ax.scatter(x[~never], np.asarray(y)[~never], s=20, alpha=0.75, label="lost channels")
            if never.any():
                ax.scatter(
                    x[never],
                    np.asarray(y)[never],
                    s=20,
                    marker="x",
                    color="grey",
                    label="never lost a channel",
                )
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths)
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%d"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.tick_params(axis="x", labelsize=8, rotation=90 if len(widths) > 6 else 0)
            ax.set_xlabel("group width at the start (channels)")
        top, bottom = axes[0][j], axes[1][j]
        top.set_ylabel("channels removed by the end (%)" if j == 0 else "")
        top.set_title(
            f"{label(name)} ({s['n_groups']} groups)\nwidth vs share removed: "
            f"rho = {s['rho_removed']:+.2f}, p = {s['p_removed']:.2g}",
            fontsize=9,
        )
        last = int(table["first_step"].max())
        steps = list(range(1, last + 1))
        bottom.set_yticks(steps)
        bottom.set_yticklabels(
            [str(t) for t in steps[:-1]] + ["never" if never.any() else str(last)]
        )
        bottom.set_ylabel("first step with channels removed" if j == 0 else "")
        bottom.set_title(
            f"width vs first losing step: rho = {s['rho_first_step']:+.2f}, "
            f"p = {s['p_first_step']:.2g}",
            fontsize=9,
        )
        top.legend(fontsize=8, loc="upper left")
    fig.suptitle(title or "do the widest layers lose filters first?")
    fig.tight_layout()
    return fig


def tolerance_selection(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    tolerance: float,
    selected: Mapping[str, pd.Series | None],
    x: str = "params",
    x_scale: float = 1e6,
    xlabel: str = "parameters (millions)",
    references: Mapping[str, float] | None = None,
    metric_labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Metric against network size with the tolerance band above the original value (from the
    original to original + ``tolerance``: the rule is one-sided, a lower EER always passes), the
    selected row of each metric ringed, and vertical ``references`` (``{label: x value}``)."""
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
        ax.invert_xaxis()
        name = (metric_labels or {}).get(metric, metric)
        ax.set(xlabel=xlabel, ylabel=name, title=name)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def compare_curves(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    hue: str,
    hue_order: Sequence[str] | None = None,
    x: str = "filters_removed_pct",
    xlabel: str = "filters removed (%)",
    metric_labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Runs overlaid by ``hue`` (e.g. criterion): one row per metric, one column per stage
    (pruned; pruned + fine-tuned, with the final fine-tuning as a star), shared axes."""
    keys = list(hue_order) if hue_order is not None else sorted(history[hue].unique())
    colors = _palette(keys)
    labels = dict(metric_labels or {})
    fig, axes = plt.subplots(
        len(metrics),
        2,
        figsize=(10, 2.9 * len(metrics) + 0.8),
        squeeze=False,
        sharex=True,
        sharey="row",
    )
    for i, metric in enumerate(metrics):
        for j, stage in enumerate(("pruned", "finetuned")):
            ax = axes[i][j]
            for key in keys:
                frame = history[history[hue] == key]
                rows = frame[frame["stage"].isin(["original", stage])].sort_values([x, "step"])
                rows = rows[rows[metric].notna()]
                ax.plot(
                    rows[x],
                    rows[metric],
                    STAGE_STYLE[stage],
                    marker=STAGE_MARKER[stage],
                    ms=4,
                    color=colors[key],
                    label=label(key),
                )
                final = frame[(frame["stage"] == "final") & frame[metric].notna()]
                if stage == "finetuned" and len(final):
                    ax.plot(
                        final[x], final[metric], "*", ms=10, color=colors[key], mec="black", mew=0.5
                    )
            if i == 0:
                ax.set_title("pruned" if stage == "pruned" else "pruned + fine-tuned (star: final)")
            if j == 0:
                ax.set_ylabel(labels.get(metric, metric))
            if i == len(metrics) - 1:
                ax.set_xlabel(xlabel)
    fig.tight_layout()
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, names, loc="lower center", ncol=len(keys), frameon=False, bbox_to_anchor=(0.5, 1.0)
    )
    fig.suptitle(title, y=1.0 + 0.45 / fig.get_size_inches()[1], va="bottom")
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
        err = np.abs(rows[["low", "high"]].to_numpy().T - rows["estimate"].to_numpy())
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
                err = np.abs(final[["low", "high"]].to_numpy().T - final["estimate"].to_numpy())
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
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.tight_layout()
    if handles:
        fig.legend(
            handles.values(), handles.keys(), loc="lower center", ncol=min(4, len(handles)),
            frameon=False, bbox_to_anchor=(0.5, 1.0),
        )  # fmt: skip
    fig.suptitle(title, y=1.0 + 0.75 / fig.get_size_inches()[1], va="bottom")
    return fig


def criteria_curves(
    table: pd.DataFrame,
    *,
    metric: str,
    runs: Mapping[str, str],
    stages: Sequence[str] = ("pruned", "finetuned"),
    bands: Sequence[str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Runs overlaid (``runs``: ``{key: run}``, one colour each, named with :func:`label`): one
    panel per stage of ``stages``, ``metric`` against filters removed (``table`` as in
    :func:`interval_curves`). The keys of ``bands`` get their 95% interval shaded (default:
    every run; several overlapping bands cannot be read, so pass the reference alone)."""
    colors = _palette(list(runs))
    shaded = set(runs) if bands is None else set(bands)
    fig, axes = plt.subplots(
        1, len(stages), figsize=(5.2 * len(stages), 4.0), squeeze=False, sharey=True
    )
    for ax, stage in zip(axes[0], stages, strict=True):
        for key, run in runs.items():
            rows = table[(table["run"] == run) & (table["metric"] == metric)]
            band = "fill" if key in shaded else "none"
            if len(rows):
                _band_line(ax, _chain_rows(rows, stage), "filters_removed_pct", colors[key],
                           stage, label(key), band=band)  # fmt: skip
        ax.set(
            xlabel=METRIC_LABELS["filters_removed_pct"],
            title=STAGE_LABEL.get(stage, stage),
        )
    axes[0][0].set_ylabel(METRIC_LABELS.get(metric, metric))
    handles, labels = axes[0][0].get_legend_handles_labels()  # one colour per run
    handles = [plt.Line2D([], [], color=h.get_color(), lw=2) for h in handles]
    axes[0][-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.suptitle(title)
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
    title: str = "",
) -> plt.Figure:
    """Estimates with their intervals as horizontal error bars, one line per row of ``frame``
    (columns ``label``, estimate, low, high, optionally ``hue`` for the colour), top to bottom;
    ``reference`` draws a vertical line (e.g. 0 for differences). Row and legend texts go through
    :func:`label`; the ``hue`` legend sits outside, right of the axes.

    ``panel`` names a column whose values get one panel each, stacked, each with its own x axis
    (e.g. EER and TAR differences, for which "better" points opposite ways); ``xlabel`` may then
    map panel values to x labels, and the panel value titles each panel.
    """
    frame = frame.reset_index(drop=True)
    colors = _palette(list(dict.fromkeys(frame[hue])) if hue else [None])
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
        _forest_panel(ax, part.reset_index(drop=True), label, hue, colors, reference)
        text = xlabel.get(p, "") if isinstance(xlabel, Mapping) else xlabel
        ax.set(xlabel=text, title=_label(str(p)) if panel else title)
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


def _forest_panel(ax, frame: pd.DataFrame, label: str, hue, colors: dict, reference) -> None:
    """One panel of :func:`interval_forest`: the rows of ``frame``, top to bottom."""
    y = np.arange(len(frame))[::-1]
    for h in colors:
        sel = (frame[hue] == h).to_numpy() if hue else np.ones(len(frame), bool)
        if not sel.any():
            continue
        f = frame[sel]
        err = np.abs(f[["low", "high"]].to_numpy().T - f["estimate"].to_numpy())
        ax.errorbar(
            f["estimate"], y[sel], xerr=np.nan_to_num(err), fmt="o", capsize=3,
            color=colors[h], label=None if h is None else _label(str(h)),
        )  # fmt: skip
    if reference is not None:
        ax.axvline(reference, color=REFERENCE, lw=0.9, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(frame[label].astype(str).map(_label))
    ax.set_ylim(-0.7, len(frame) - 0.3)


def null_comparison(frame: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Observed Spearman rho of every run (dot) against the central 95% of its random-removal
    null (grey bar, "random-removal band"): ``frame`` has columns run, rho, low, high (from
    :func:`facepruning.analysis.width_null_position`; run names go through :func:`label`). A dot
    right of its bar: wider groups lose more than chance; inside: indistinguishable from random
    removal. The legend sits below the axes, clear of the bars."""
    frame = frame.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(frame) + 1.4))
    y = np.arange(len(frame))[::-1]
    ax.hlines(y, frame["low"], frame["high"], color=REFERENCE, lw=6, alpha=0.35,
              label="random-removal band (95%)")  # fmt: skip
    inside = (frame["rho"] >= frame["low"]) & (frame["rho"] <= frame["high"])
    ax.plot(frame["rho"][~inside], y[~inside], "o", color=OKABE_ITO[3], label="observed, outside")
    ax.plot(frame["rho"][inside], y[inside], "o", color=OKABE_ITO[0], label="observed, inside")
    ax.axvline(0, color=REFERENCE, lw=0.8, ls=":")
    ax.set_yticks(y)
    ax.set_yticklabels(frame["run"].astype(str).map(_label))
    ax.set(
        xlabel="Spearman rho, group width vs share of its channels removed",
        xlim=(-1.05, 1.05),
        ylim=(-0.6, len(frame) - 0.4),
        title=title,
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def layer_bars(
    layers: Mapping[str, pd.DataFrame], *, steps: Sequence[int] | None = None, title: str = ""
) -> plt.Figure:
    """Filters per layer group as bars, the way the papers plot layers: one panel per network
    (titled with :func:`label` of its key; groups in network order, input on the left), the width
    at the start in light grey and the filters left after each step of ``steps`` (default: the
    middle and the last step) overlaid."""
    fig, axes = plt.subplots(len(layers), 1, figsize=(11, 2.9 * len(layers) + 0.4), squeeze=False)
    for ax, (name, table) in zip(axes[:, 0], layers.items(), strict=True):
        table = table[sorted(table.columns)]
        cols = list(table.columns)
        shown = list(steps) if steps is not None else sorted({cols[len(cols) // 2], cols[-1]})
        shown = [s for s in shown if s in table.columns and s != cols[0]]
        x = np.arange(len(table))
        ax.bar(x, table[cols[0]], color="#DDDDDD", width=0.85, label=f"start (step {cols[0]})")
        for k, step in enumerate(shown):
            ax.bar(x, table[step], width=0.85 - 0.25 * (k + 1) / max(1, len(shown)),
                   color=OKABE_ITO[k % len(OKABE_ITO)], label=f"after step {step}")  # fmt: skip
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%d"))
        ax.set(xlim=(-0.6, len(table) - 0.4), ylabel="filters (log scale)", title=label(name))
        ax.set_xticks(x[:: max(1, len(x) // 20)])
        ax.legend(loc="upper left", fontsize=8, ncol=len(shown) + 1)
    axes[-1][0].set_xlabel("layer group, in network order (input on the left)")
    fig.suptitle(title or "filters per layer group")
    fig.tight_layout()
    return fig


def descriptor_sizes(history: pd.DataFrame, *, col_order: Sequence[str], title: str = ""):
    """Descriptor size against filters removed, one line per network (``arch`` of ``history``,
    pruned rows from the original)."""
    colors = _palette(col_order)
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
