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

from .artifacts import atomic_path  # noqa: E402

__all__ = [
    "save_figure",
    "training_curves",
    "roc_curves",
    "score_distributions",
    "pruning_curves",
    "layer_heatmap",
]

sns.set_theme(context="notebook", style="whitegrid")
STAGE_STYLE = {"pruned": "-", "finetuned": "--", "original": ":", "final": "-."}


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
