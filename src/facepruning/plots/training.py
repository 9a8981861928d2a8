"""Figures of notebook 02 (baseline training): training curves, ROC curves, score distributions.

Importing this module applies the figures' theme (:func:`.style.apply_theme`).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import style

__all__ = ["training_curves", "roc_curves", "score_distributions"]

style.apply_theme()


#: Colours are the networks' (:data:`.style.COLOR_OF`); what a figure compares within one network
#: is told apart by line style or, for the histograms, the reference grey.
SPLIT_STYLE = {"train": "-", "validation": "--"}
TEMPLATE_STYLES = ("-", "--", "-.", ":")


def training_curves(
    history: pd.DataFrame, *, color: str | None = None, title: str = ""
) -> plt.Figure:
    """Loss and accuracy per epoch (train solid, validation dashed, in ``color``, the network's)
    with the learning rate on the right."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for split, column in (("train", "train"), ("validation", "val")):
        for ax, measure in zip(axes[:2], ("loss", "acc"), strict=True):
            ax.plot(
                history["epoch"],
                history[f"{column}_{measure}"],
                SPLIT_STYLE[split],
                color=color,
                label=split,
            )
    axes[0].set(xlabel="epoch", ylabel="cross-entropy (log scale)", title="loss", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="top-1", title="identification accuracy", ylim=(0, 1.02))
    axes[2].step(history["epoch"], history["lr"], where="post", color=color)
    axes[2].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="plateau schedule")
    for ax in axes[:2]:
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def roc_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, color: str | None = None, title=""
) -> plt.Figure:
    """ROC curves, TAR against FAR on a log axis, one per label: ``{label: (far, tar)}``, in
    ``color`` (the network's), told apart by line style."""
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    for k, (label, (far, tar)) in enumerate(curves.items()):
        far = np.asarray(far)
        keep = far > 0
        line = TEMPLATE_STYLES[k % len(TEMPLATE_STYLES)]
        ax.plot(far[keep], np.asarray(tar)[keep], line, color=color, label=label)
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
    scores: np.ndarray,
    genuine: np.ndarray,
    *,
    threshold: float | None = None,
    color: str | None = None,
    title: str = "",
) -> plt.Figure:
    """Histograms of genuine (in ``color``, the network's) and impostor (grey) cosine
    similarities."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    scores, genuine = np.asarray(scores), np.asarray(genuine, dtype=bool)
    bins = np.linspace(scores.min(), scores.max(), 40)
    ax.hist(scores[~genuine], bins=bins, density=True, alpha=0.6, color="#999999", label="impostor")
    ax.hist(scores[genuine], bins=bins, density=True, alpha=0.6, color=color, label="genuine")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1, label="EER threshold")
    ax.set(xlabel="cosine similarity", ylabel="density", title=title or "score distributions")
    ax.legend()
    fig.tight_layout()
    return fig
