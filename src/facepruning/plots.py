"""Figures of the notebooks: one function per kind of figure, each returning a matplotlib Figure.

The functions take plain tables (pandas DataFrames of histories, arrays of scores) so that the
notebooks decide what to show and this module only decides how it looks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

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
    "metric_grid",
    "layer_heatmaps",
    "width_order_scatter",
    "tolerance_selection",
    "compare_curves",
]

sns.set_theme(context="notebook", style="whitegrid")
STAGE_STYLE = {"pruned": "-", "finetuned": "--", "original": ":", "final": "-."}
STAGE_LABEL = {"pruned": "pruned", "finetuned": "pruned + fine-tuned"}


def save_figure(fig: plt.Figure, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Save ``fig`` as PNG atomically (the parent folder is created)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")


def training_curves(history: pd.DataFrame, *, title: str = "") -> plt.Figure:
    """Loss and accuracy per epoch (train and validation) with the learning rate below."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].plot(history["epoch"], history["train_loss"], label="train")
    axes[0].plot(history["epoch"], history["val_loss"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss")
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
    ax.plot([1e-4, 1], [1e-4, 1], color="grey", lw=0.8, ls=":", label="chance")
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
    """Metrics against the share of filters removed, pruned (solid) and fine-tuned (dashed).

    ``hue`` names a column (architecture, criterion) drawn in separate colours.
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    groups = history.groupby(hue) if hue else [("", history)]
    palette = dict(zip([g for g, _ in groups], sns.color_palette(n_colors=16), strict=False))
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, frame in groups:
            for stage in ("pruned", "finetuned"):
                rows = frame[frame["stage"].isin(["original", stage])].sort_values(x)
                if rows[metric].notna().sum() < 2:
                    continue
                label = f"{key} {stage}".strip()
                ax.plot(
                    rows[x],
                    rows[metric],
                    STAGE_STYLE[stage],
                    color=palette[key],
                    marker="o",
                    ms=3,
                    label=label,
                )
        ax.set(xlabel=x.replace("_", " "), ylabel=metric, title=metric)
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
    ax.tick_params(axis="y", labelsize=6)
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
                marker="o",
                ms=3,
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

    def scale(name: str) -> float:
        return x_scale.get(name, 1.0) if isinstance(x_scale, Mapping) else x_scale

    def label(name: str) -> str:
        if isinstance(xlabel, Mapping):
            return xlabel.get(name, name.replace("_", " "))
        return xlabel or name.replace("_", " ")

    keys = list(col_order) if col_order is not None else sorted(history[col].unique())
    labels = dict(metric_labels or {})
    colors = dict(zip(keys, sns.color_palette(n_colors=max(3, len(keys))), strict=False))
    fig, axes = plt.subplots(
        len(metrics),
        len(keys),
        figsize=(max(6.0, 4.0 * len(keys) + 0.6), 2.6 * len(metrics) + 0.6),
        squeeze=False,
        sharex="col" if shared else False,
        sharey="row",
    )
    for j, key in enumerate(keys):
        frame = history[history[col] == key].copy()
        original = frame[frame["stage"] == "original"]
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            frame["_x"] = frame[xs[i]] / scale(xs[i])
            if metric not in frame or frame[metric].notna().sum() == 0:
                ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
                continue
            _stage_lines(ax, frame, "_x", metric, colors[key])
            if len(original) and pd.notna(original[metric].iloc[0]):
                ref = float(original[metric].iloc[0])
                ax.axhline(ref, color="grey", lw=0.8, ls=":")
                if band and metric in band:
                    ax.axhspan(
                        ref - band[metric], ref + band[metric], color="grey", alpha=0.15, lw=0
                    )
            if i == 0:
                ax.set_title(str(key))
            if j == 0:
                ax.set_ylabel(labels.get(metric, metric))
            if i == len(metrics) - 1 or not shared:
                ax.set_xlabel(label(xs[i]))
            if invert_x and (i == 0 or not shared):
                ax.invert_xaxis()
    handles, names = [], []
    for ax in axes.flat:
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        legend_handles = [
            plt.Line2D([], [], color="black", ls="-", marker="o", ms=3, label="pruned"),
            plt.Line2D(
                [], [], color="black", ls="--", marker="o", ms=3, label="pruned + fine-tuned"
            ),
            plt.Line2D([], [], color="black", ls="", marker="*", ms=10, label="final fine-tuning"),
            plt.Line2D([], [], color="grey", ls=":", label="original network"),
        ]
    fig.tight_layout()
    if handles:
        fig.legend(
            handles=legend_handles,
            loc="lower center",
            ncol=2 if len(keys) == 1 else 4,
            frameon=False,
            bbox_to_anchor=(0.5, 1.0),
        )
    height = fig.get_size_inches()[1]
    fig.suptitle(title, y=1.0 + (0.75 if handles and len(keys) == 1 else 0.4) / height, va="bottom")
    return fig


def layer_heatmaps(layers: Mapping[str, pd.DataFrame], *, title: str = "") -> plt.Figure:
    """:func:`layer_heatmap` for several networks side by side (share of channels left); the
    row labels carry each group's starting width."""
    n = len(layers)
    rows = max(len(t) for t in layers.values())
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(4.8 * n + 1.2, max(3.5, 0.17 * rows + 1.4)),
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
        ax.set(xlabel="pruning step", ylabel="", title=f"{name} ({len(table)} groups)")
        ax.tick_params(axis="y", labelsize=5.5)
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
            ax.tick_params(axis="x", labelsize=7, rotation=90 if len(widths) > 6 else 0)
            ax.set_xlabel("group width at the start (channels)")
        top, bottom = axes[0][j], axes[1][j]
        top.set_ylabel("channels removed by the end (%)" if j == 0 else "")
        top.set_title(
            f"{name} ({s['n_groups']} groups)\nwidth vs share removed: "
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
        top.legend(fontsize=7, loc="upper left")
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
    """Metric against network size with the tolerance band around the original value, the
    selected row of each metric ringed, and vertical ``references`` (``{label: x value}``)."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.6 * len(metrics), 5.2), squeeze=False)
    frame = history.copy()
    frame["_x"] = frame[x] / x_scale
    for ax, metric in zip(axes[0], metrics, strict=True):
        _stage_lines(ax, frame, "_x", metric, "C0")
        ref = float(frame.loc[frame["stage"] == "original", metric].iloc[0])
        ax.axhspan(
            ref - tolerance,
            ref + tolerance,
            color="grey",
            alpha=0.15,
            lw=0,
            label=f"original +- {tolerance:g}",
        )
        ax.axhline(ref, color="grey", lw=0.8, ls=":")
        for k, (label, value) in enumerate((references or {}).items()):
            ax.axvline(value / x_scale, color=f"C{k + 1}", lw=1, ls="-.", label=label)
        row = selected.get(metric)
        if row is not None:
            ax.plot(
                row[x] / x_scale,
                row[metric],
                "o",
                ms=14,
                mfc="none",
                mec="red",
                mew=2,
                label=f"selected: {row['stage']}, step {int(row['step'])}",
            )
        ax.invert_xaxis()
        name = (metric_labels or {}).get(metric, metric)
        ax.set(xlabel=xlabel, ylabel=name, title=name)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
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
    colors = dict(zip(keys, sns.color_palette(n_colors=max(4, len(keys))), strict=False))
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
                    marker="o",
                    ms=3,
                    color=colors[key],
                    label=str(key),
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
