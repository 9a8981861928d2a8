"""The width test: do the widest layer groups lose filters first?

- :func:`width_order`: per group of a layer table, its initial width, the share removed and the
  first step that removed any;
- :func:`width_rank_summary`: the rank correlations behind the claim, with permutation p-values
  (:func:`spearman`, :func:`permutation_pvalue`, from :mod:`facepruning.statistics`);
- :func:`width_null_position`: the observed width-vs-removal rho
  (:func:`facepruning.statistics.width_rank_correlation`) against random scores put through the
  run's own selection, with and without the layer-wise normalisation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import statistics as st
from ..errors import DataError
from ..statistics import permutation_pvalue, spearman

__all__ = [
    "spearman",
    "permutation_pvalue",
    "width_order",
    "width_rank_summary",
    "width_null_position",
]


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


def width_null_position(
    layers: pd.DataFrame,
    *,
    min_channels: int = 1,
    channel_multiple: int = 1,
    normalised: bool = False,
    per_step: int | None = None,
    n: int = 10000,
    seed: int = 0,
) -> dict[str, float | str | dict]:
    """Observed Spearman rho (width vs share removed, :func:`statistics.width_rank_correlation`)
    of a layer table against two nulls of :func:`statistics.width_null`, each the same channels
    removed at each step under the run's ``min_channels`` and ``channel_multiple``: ``uniform``
    (random scores: what the selection alone does) and ``normalised`` (random scores after the
    layer-wise normalisation: what the normalisation adds). The top level (``rho, p, low, high,
    median``; low/high the null's 2.5% and 97.5% quantiles) places rho in the null that matches
    the run, ``normalised`` for a run whose scores were normalised per layer, and names it in
    ``null``; ``removed`` counts the channels removed.

    ``per_step``: the channels the loop asked for at each step (the run's ``channels_per_step``);
    the null then asks for as many, and rounds as the loop rounded. Without it each step asks for
    what the run removed, which with ``channel_multiple`` > 1 already includes the rounding, so
    the null removes a little more than the run did."""
    table = width_order(layers)
    ordered = layers[sorted(layers.columns)]
    last = ordered.iloc[:, -1].to_numpy()
    removed = int(round(float((table["width"].to_numpy() - last).sum())))
    rho = st.width_rank_correlation(table["width"], last)
    observed = (-np.diff(ordered.sum(axis=0).to_numpy())).tolist()
    steps = [per_step] * len(observed) if per_step else observed
    position = {}
    for name in ("uniform", "normalised"):
        null = st.width_null(
            table["width"].to_numpy(),
            removed,
            min_channels=min_channels,
            channel_multiple=channel_multiple,
            steps=steps,
            n=n,
            seed=seed,
            normalised=name == "normalised",
        )
        position[name] = st.null_position(rho, null)
    used = "normalised" if normalised else "uniform"
    return {**position[used], "null": used, **position, "removed": removed}
