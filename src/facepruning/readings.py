"""The sentences that interpret a run's results, written from the results themselves.

A report's "What to see" line must say what its own numbers show: the same sentence typed once
for every run reads true for one run and false for the next (fine-tuning that "wins back" what it
made worse, a random criterion that "prefers" wide layers). Each function here takes the numbers a
figure shows and chooses its phrasing by their sign, size or kind; ``tests/test_readings.py`` feeds
them contrasting inputs and checks the sentence changes with them.

- :func:`training_reading`: notebook 02's loss curves (levelled off or still falling, a spike);
- :func:`finetuning_reading`: notebook 03's curves (how often fine-tuning helps, the control);
- :func:`width_reading`: notebook 03's width correlation (a criterion blind to width says so);
- :func:`taylor_check_reading`: notebook 03's worked example (where the estimate holds, where not);
- :func:`change_reading`: notebook 04's and the README's steps against the original or control;
- :func:`fmt_interval`, :func:`fmt_envelope`, :func:`finite_or_none`: numbers as the sentences,
  tables and JSON write them; :func:`digits_apart`, :func:`claim_digits`: enough digits that a
  number is not printed as the threshold it misses.

Nothing here imports a network or the analysis code, so that the README generator
(:mod:`facepruning.readme`) can write its sentences without them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "training_reading",
    "finetuning_reading",
    "width_reading",
    "taylor_check_reading",
    "change_reading",
    "fmt_interval",
    "fmt_envelope",
    "finite_or_none",
    "digits_apart",
    "claim_digits",
]

#: Correlations of predicted and measured loss changes at least this high: the estimate ranks
#: channels as removal does; below :data:`POOR`, it does not.
GOOD, POOR = 0.9, 0.5

#: Criteria that never look at a layer's width or its weights: any correlation with width is the
#: selection's and chance's, not the criterion's.
WIDTH_BLIND = ("random",)

#: Width correlations at least this strong read "clearly", at least :data:`WEAK` "somewhat",
#: weaker ones "barely".
STRONG, WEAK = 0.7, 0.3

#: A validation loss this many times the training loss of the same epoch is called a spike.
SPIKE_RATIO = 10.0


def finite_or_none(value) -> float | None:
    """A plain float for JSON, or None for NaN/None (numpy NaNs would otherwise be written)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def fmt_interval(estimate, low=None, high=None, digits: int = 3, sign: bool = False) -> str:
    """``"0.133 [0.110, 0.160]"`` (``low``/``high`` None or NaN: the estimate alone; ``"n/a"``
    for a missing estimate); ``sign`` writes a leading + on positive numbers."""
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if finite_or_none(estimate) is None:
        return "n/a"
    text = f.format(estimate)
    if finite_or_none(low) is not None and finite_or_none(high) is not None:
        text += f" [{f.format(low)}, {f.format(high)}]"
    return text


def training_reading(
    history: pd.DataFrame, *, lr_levels: Sequence[float], converged: bool, patience: int
) -> str:
    """What notebook 02's loss curves show: where the validation loss is lowest, whether it
    levelled off or was still falling when training stopped, and any epochs where it lies far
    above the training loss.

    ``history``: one row per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``lr``,
    ``train_acc`` and ``val_acc``; ``converged``: the schedule ran out (rather than the epoch cap).
    """
    best = history.loc[history["val_loss"].idxmin()]
    last = history.iloc[-1]
    epochs_since_best = int(last["epoch"] - best["epoch"])
    lowest = f"the validation loss is lowest at epoch {best['epoch']:.0f} ({best['val_loss']:.3f})"
    if converged:
        shape = (
            f"{lowest} and levels off there: the learning rate took all {len(lr_levels)} values "
            "of the schedule, and the plateau on the last one ended training"
        )
    elif epochs_since_best < patience:
        shape = (
            f"{lowest}, within {patience} epochs of the cap: it was still falling when training "
            f"stopped at epoch {last['epoch']:.0f}, on {history['lr'].nunique()} of the "
            f"schedule's {len(lr_levels)} learning rates, so the network is not converged"
        )
    else:
        shape = (
            f"{lowest}, {epochs_since_best} epochs before the cap at epoch {last['epoch']:.0f}: it "
            f"levelled off, but the schedule had taken only {history['lr'].nunique()} of its "
            f"{len(lr_levels)} learning rates"
        )
    spike = ""
    spiky = history[history["val_loss"] > SPIKE_RATIO * history["train_loss"]]
    if len(spiky):
        peak = spiky.loc[spiky["val_loss"].idxmax()]
        spike = (
            f" The validation loss peaks at {peak['val_loss']:,.0f} (epoch {peak['epoch']:.0f}) "
            f"and is more than {SPIKE_RATIO:.0f} times the training loss in {len(spiky)} epochs, "
            f"the last of them epoch {spiky['epoch'].iloc[-1]:.0f}: it is measured in evaluation "
            "mode, with BatchNorm's running statistics (the log scale keeps it on the plot)."
        )
    return (
        f"Here {shape}. The last epoch reached {last['train_acc']:.2f} identification accuracy "
        f"on training and {last['val_acc']:.2f} on validation images.{spike}"
    )


def finetuning_reading(history: pd.DataFrame, *, control: bool, metric: str = "t1/eer") -> str:
    """What notebook 03's curves show of ``metric`` (lower is better): from the original to the
    last pruned step and after the final fine-tuning, and in how many steps the short
    fine-tuning lowered or raised it. For the no-pruning ``control`` the same numbers read as
    what training alone does.
    """
    rows = history[history["stage"].isin(["pruned", "finetuned"])]
    paired = rows.pivot_table(index="step", columns="stage", values=metric).dropna()
    first = float(history.loc[history["stage"] == "original", metric].iloc[0])
    pruned = history[history["stage"] == "pruned"]
    last = pruned.iloc[-1] if len(pruned) else history.iloc[0]
    final = float(history[metric].iloc[-1])
    name = "1-image EER" if metric == "t1/eer" else metric
    if control:
        path = (
            f"With nothing removed, the same training moves the {name} from {first:.3f} at step 0 "
            f"to {last[metric]:.3f} at step {last['step']:.0f} (before its fine-tuning) and "
            f"{final:.3f} after the final fine-tuning: the drift a pruning run shows on top of "
            "its pruning"
        )
    else:
        path = (
            f"The {name} goes from {first:.3f} unpruned to {last[metric]:.3f} at step "
            f"{last['step']:.0f} as pruned ({last['filters_removed_pct']:.1f}% of the filters "
            f"removed) and {final:.3f} after the final fine-tuning"
        )
    if paired.empty or not {"pruned", "finetuned"} <= set(paired.columns):
        return path + "."
    change = paired["finetuned"] - paired["pruned"]
    better, worse, n = int((change < 0).sum()), int((change > 0).sum()), len(change)
    what = "each short training" if control else "the short fine-tuning after a step"
    if better > worse:
        verdict = f"{what} lowers it in {better} of {n} steps (raises it in {worse})"
    elif worse > better and control:
        verdict = f"{what} raises it in {worse} of {n} steps (lowers it in {better})"
    elif worse > better:
        verdict = (
            f"{what} raises it in {worse} of {n} steps and lowers it in only {better}: on these "
            "test identities it does not win back what removal cost"
        )
    else:
        verdict = f"{what} lowers it in {better} of {n} steps and raises it in as many"
    return f"{path}; {verdict} (mean change {change.mean():+.3f})."


def width_reading(rho: float, *, criterion: str) -> str:
    """What notebook 03's width correlation says: Spearman's rho between a group's original width
    and the share of it removed, read as a preference of the criterion unless the criterion is
    blind to width (:data:`WIDTH_BLIND`), where it can only be the selection's and chance's."""
    if np.isnan(rho):
        return "every group lost the same share, so width and share lost have no rank correlation"
    stated = f"Spearman's rho of width and share lost is {rho:.2f}"
    if criterion in WIDTH_BLIND:
        return (
            f"{stated}; `{criterion}` never looks at a group's width, so this is what chance and "
            "the loop's selection (whole multiples of channels, a minimum per group) give, not a "
            "preference of the criterion"
        )
    if rho == 0:
        return f"{stated}: wider groups lost neither more nor less"
    how = "clearly" if abs(rho) >= STRONG else "somewhat" if abs(rho) >= WEAK else "barely"
    return (
        f"{stated}: wider groups lost {how} {'more' if rho > 0 else 'less'}, by rank; whether "
        "that goes beyond what random scores put through the same loop would give is notebook "
        "04's question (claim C7)"
    )


def taylor_check_reading(correlations: dict[str, float]) -> str:
    """What notebook 03's worked example shows: in which groups (role -> Spearman correlation of
    the first-order prediction with the measured loss change) the estimate ranks channels as
    removing them does (>= :data:`GOOD`), in which it does not (< :data:`POOR`), and in
    between."""

    def named(items):
        return ", ".join(f"the {role} (rank correlation {r:.2f})" for role, r in items)

    known = {k: v for k, v in correlations.items() if not np.isnan(v)}
    good = [(k, v) for k, v in known.items() if v >= GOOD]
    poor = [(k, v) for k, v in known.items() if v < POOR]
    fair = [(k, v) for k, v in known.items() if POOR <= v < GOOD]
    parts = []
    if good:
        parts.append(
            f"the first-order estimate ranks channels as zeroing them does in {named(good)}"
        )
    if fair:
        parts.append(f"it ranks them roughly in {named(fair)}")
    if poor:
        parts.append(
            f"it fails in {named(poor)}: there removing a channel changes the loss otherwise than "
            "its local slope says, so the scores there are a weak guide to what removal costs"
        )
    missing = sorted(set(correlations) - set(known))
    if missing:
        parts.append(f"no correlation is defined for the {', '.join(missing)} (constant changes)")
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def digits_apart(values: Sequence, threshold: float | None, digits: int = 3) -> int:
    """The decimals, at least ``digits``, at which none of ``values`` that differs from
    ``+threshold`` or ``-threshold`` prints as it: an interval's end of 0.0199 printed "+0.020"
    beside a verdict that it lies within +-0.02 reads as a contradiction (up to 6 decimals).

    >>> digits_apart([-0.1027, 0.01988], 0.02)
    4
    """
    if threshold is None:
        return digits
    finite = [float(v) for v in values if finite_or_none(v) is not None]
    ends = (threshold, -threshold)
    for d in range(digits, 7):
        if not any(abs(round(v, d) - t) < 1e-12 < abs(v - t) for v in finite for t in ends):
            return d
    return 6


def claim_digits(claim: Mapping) -> int:
    """The decimals of one claim of ``analysis.json`` (``summarize(...).compact["claims"]``):
    :func:`digits_apart` of its estimate, interval, envelope and sub-lines against its threshold,
    so that the README and notebook 04 print a claim alike. C7 (against a null band, not a
    threshold) keeps 3."""
    if claim["metric"].startswith("spearman"):
        return 3
    values = [claim["estimate"], *(claim["ci"] or []), *(claim.get("without_one_run") or [])]
    for part in claim.get("parts", {}).values():
        values += [part["estimate"], *(part["ci"] or [])]
    return digits_apart(values, claim.get("threshold"))


def fmt_envelope(ends: Sequence | None, digits: int = 3) -> str:
    """``"[-0.024, +0.026]"``; an end left unbounded (too few identities without one run) reads
    "unbounded"; empty for a claim judged on one training run."""
    if not ends:
        return ""
    low, high = ("unbounded" if v is None else f"{v:+.{digits}f}" for v in ends)
    return f"[{low}, {high}]"


def change_reading(
    frame: pd.DataFrame, *, metric: str = "t1/eer", labels: Mapping[str, str] | None = None
) -> str:
    """Per network of ``frame`` (:func:`facepruning.analysis.change_curves`, one comparison): at
    how many steps the pointwise 95% interval of ``metric``'s change lies on the worse side of
    zero (above, for an EER; below, for a TAR), from what share of filters on, and on the better
    side; how many training runs and identities it rests on; and the last step's change. Steps
    without an interval are left out of the count; networks named by ``labels``."""
    eer = metric.endswith("eer")
    parts = []
    rows_of = frame[frame["metric"] == metric] if len(frame) else frame
    for arch, rows in rows_of.groupby("arch", sort=False):
        rows = rows.sort_values("step")
        judged = rows[rows["low"].notna() & rows["high"].notna()]
        above, below = judged[judged["low"] > 0], judged[judged["high"] < 0]
        worse, better = (above, below) if eer else (below, above)
        n = len(judged)
        if worse.empty and better.empty:
            side = f"the interval contains zero at all {n} steps"
        else:
            side = f"the interval lies on the worse side of zero at {len(worse)} of {n} steps"
            if len(worse):
                side += f", the first at {worse['filters_removed_pct'].min():.0f}% removed"
            if len(better):
                side += f", on the better side at {len(better)}"
        last = rows.iloc[-1]
        runs = int(last["training_runs"])
        parts.append(
            f"{(labels or {}).get(arch, arch)} ({runs} training run{'s' if runs > 1 else ''}, "
            f"{int(last['identities'])} test identities): {side}; at the last step "
            f"({last['filters_removed_pct']:.0f}% of filters removed) "
            f"{fmt_interval(last['estimate'], last['low'], last['high'], sign=True)}"
        )
    return "; ".join(parts) + "." if parts else "no step to read."
