"""Figures of notebook 03 (pruning): pruning curves, channels left per layer group, and the worked
example of the Taylor estimate.

Importing this module applies the figures' theme (:func:`.style.apply_theme`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from . import style
from .style import (
    CONTROL_STAGE_LABEL,
    METRIC_LABELS,
    RATE_MIN_SPAN,
    STAGE_LABEL,
    STAGE_MARKER,
    STAGE_STYLE,
    label,
    palette,
)

__all__ = ["pruning_curves", "layer_heatmap", "taylor_check", "taylor_checks"]

style.apply_theme()


#: The last row of a run (after its final, longer fine-tuning), drawn as one marker.
FINAL_LABEL = "after the final fine-tuning"


def pruning_curves(
    history: pd.DataFrame,
    *,
    metrics: Sequence[str],
    x: str = "filters_removed_pct",
    hue: str | None = None,
    labels: Mapping[str, str] | None = None,
    control: bool = False,
    color: str | None = None,
    title: str = "",
) -> plt.Figure:
    """Metrics against ``x`` (the share of filters removed; ``"step"`` for a run that removes
    nothing), pruned (solid) and fine-tuned (dashed), from the original network, and the final
    network (after the final fine-tuning) as a star. A ``control``
    (nothing removed) names its curves before and after fine-tuning. A rate's axis (EER,
    accuracy, TAR) spans at least :data:`.style.RATE_MIN_SPAN`, within [0, 1].

    ``hue`` names a column (architecture, criterion) drawn in separate colours, named in the
    legend with :func:`.style.label` (``labels``: the display texts of keys it does not know,
    e.g. criteria); without it, one run is drawn in ``color`` (its :func:`.style.palette`
    colour, so that a run looks the same in every figure).
    """
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    groups = history.groupby(hue) if hue else [("", history)]
    colors = palette([g for g, _ in groups]) if color is None else dict.fromkeys([""], color)
    stage_label = CONTROL_STAGE_LABEL if control else STAGE_LABEL
    for ax, metric in zip(axes[0], metrics, strict=True):
        for key, frame in groups:
            for stage in ("pruned", "finetuned"):
                rows = frame[frame["stage"].isin(["original", stage])].sort_values(x)
                if rows[metric].notna().sum() < 2:
                    continue
                text = (
                    f"{label(key, labels=labels)}, {stage_label[stage]}"
                    if hue
                    else stage_label[stage]
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
            final = frame[(frame["stage"] == "final") & frame[metric].notna()]
            if len(final):  # the network the run hands over: the reports quote it
                text = f"{label(key, labels=labels)}, {FINAL_LABEL}" if hue else FINAL_LABEL
                ax.plot(final[x], final[metric], ls="none", color=colors[key], ms=10, label=text,
                        marker=STAGE_MARKER["final"], mec="black", mew=0.6)  # fmt: skip
        if metric.endswith(("eer", "acc")) or "tar@" in metric:
            _widen(ax, RATE_MIN_SPAN)
        name = METRIC_LABELS.get(metric, metric)
        ax.set(xlabel=METRIC_LABELS.get(x, x.replace("_", " ")), ylabel=name, title=name)
        if x == "step":
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _widen(ax: plt.Axes, span: float) -> None:
    """Widen the y axis around its centre to at least ``span``, and keep it within a rate's
    range [0, 1] and a margin of 5% of ``span`` beyond it (so that markers at 0 or 1 are drawn
    whole, and no tick reads an accuracy above 1)."""
    margin = 0.05 * span
    low, high = ax.get_ylim()
    if high - low < span:
        centre = (low + high) / 2
        low = min(max(-margin, centre - span / 2), 1.0 + margin - span)
        high = low + span
    ax.set_ylim(max(low, -margin), min(high, 1.0 + margin))


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
    uses: str,
    color: str | None = None,
) -> plt.Figure:
    """Notebook 03's worked example (:func:`facepruning.pruning.taylor_prediction_check`).

    Left: the first-order prediction of the loss change against the change measured, one point
    per zeroed channel of ``group``, with the dotted diagonal of a perfect estimate. Right:
    ``criterion``'s scores of all the group's channels, sorted (the left end goes first);
    ``criterion`` is the criterion's display name (e.g. "Taylor (activations)"), shown as given,
    and ``uses`` what its scores are computed from (e.g. "one mini-batch", "the weights alone").
    The left panel tests the Taylor estimate whatever the run's criterion; ``color``: the run's.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    lim = np.abs(np.r_[predicted, measured]).max() * 1.05
    axes[0].scatter(predicted, measured, s=12, color=color)
    axes[0].plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls=":")
    axes[0].set(
        xlabel="first-order prediction of the loss change",
        ylabel="measured loss change",
        title=f"{group}: Taylor estimate vs\none channel zeroed at a time",
    )
    axes[1].plot(np.sort(scores), marker=".", lw=0.8, color=color)
    axes[1].set(
        xlabel="channel (sorted by score)",
        ylabel=f"{criterion} score",
        title=f"{criterion}, from {uses}:\nthe left end goes first",
    )
    fig.tight_layout()
    return fig


def taylor_checks(checks: Mapping[str, Any], *, color: str | None = None) -> plt.Figure:
    """The first-order prediction against the measured loss change in several groups, one panel
    each (``checks``: role -> :class:`~facepruning.pruning.TaylorCheck`), with the dotted
    diagonal of a perfect estimate and the rank correlation in the title; ``color``: the run's."""
    fig, axes = plt.subplots(1, len(checks), figsize=(3.4 * len(checks), 3.4), squeeze=False)
    for ax, (role, check) in zip(axes[0], checks.items(), strict=True):
        lim = np.abs(np.r_[check.predicted, check.measured]).max() * 1.05 or 1.0
        ax.scatter(check.predicted, check.measured, s=12, color=color)
        ax.plot([-lim, lim], [-lim, lim], color="grey", lw=0.8, ls=":")
        short = check.group.removeprefix("backbone.")
        ax.set(
            xlim=(-lim, lim),
            ylim=(-lim, lim),
            xlabel="first-order prediction",
            title=f"{role}: {short}\nrank correlation {check.correlation:.2f}",
        )
        ax.title.set_fontsize(9)
        # losses of 1e-4: a shared power of ten and four ticks keep the labels apart
        ax.ticklabel_format(style="sci", scilimits=(0, 0))
        ax.xaxis.set_major_locator(ticker.MaxNLocator(4, symmetric=True))
        ax.yaxis.set_major_locator(ticker.MaxNLocator(4, symmetric=True))
    axes[0][0].set_ylabel("measured loss change")
    fig.tight_layout()
    return fig
