"""Figures of notebook 03 (pruning): pruning curves, channels left per layer group, and the worked
example of the Taylor estimate.

Importing this module applies the figures' theme (:func:`.style.apply_theme`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from . import style
from .style import METRIC_LABELS, STAGE_LABEL, STAGE_MARKER, STAGE_STYLE, label, palette

__all__ = ["pruning_curves", "layer_heatmap", "taylor_check"]

style.apply_theme()


def pruning_curves(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    x: str = "filters_removed_pct",
    hue: str | None = None,
    labels: Mapping[str, str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Metrics against ``x`` (the share of filters removed; ``"step"`` for a run that removes
    nothing), pruned (solid) and fine-tuned (dashed), from the original network.

    ``hue`` names a column (architecture, criterion) drawn in separate colours, named in the
    legend with :func:`.style.label` (``labels``: the display texts of keys it does not know,
    e.g. criteria).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    groups = history.groupby(hue) if hue else [("", history)]
    colors = palette([g for g, _ in groups])
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, frame in groups:
            for stage in ("pruned", "finetuned"):
                rows = frame[frame["stage"].isin(["original", stage])].sort_values(x)
                if rows[metric].notna().sum() < 2:
                    continue
                text = (
                    f"{label(key, labels=labels)}, {STAGE_LABEL[stage]}"
                    if hue
                    else STAGE_LABEL[stage]
                )
                ax.plot(
                    rows[x],
                    rows[metric],
                    STAGE_STYLE[stage],
                    color=colors[key],
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
    ``criterion``'s scores of all the group's channels, sorted (the left end goes first);
    ``criterion`` is the criterion's display name (e.g. "Taylor (activations)"), shown as given.
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
        ylabel=f"{criterion} score",
        title="scores on one mini-batch; the left end goes first",
    )
    fig.tight_layout()
    return fig
