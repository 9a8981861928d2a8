"""Verdicts on the papers' claims C1-C7 (docs/PAPERS.md): holds, refuted or inconclusive.

- :data:`CLAIMS`, :data:`VERDICTS`; :func:`verdict`: whether a 95% interval clears a claim's
  threshold;
- :func:`judge_claims`: every claim, one line per network or run and a combined line, from the
  runs' identity-bootstrap replicates (paired differences on the same resamples);
- :func:`claims_table`, :func:`numbers_of`, :func:`decided_by`: the closing table of notebook 04
  and which network a combined verdict rests on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import readings
from .. import statistics as st
from ..errors import DataError
from ..models import build_model, count_parameters
from .intervals import _check_same_pairs, _ci, _metric_values, finite_or_none, fmt_interval
from .pooling import Pooled, Units, pool, replicate_groups, unit_of
from .runs import (
    CONTROL_CRITERION,
    ORIGINAL,
    PruneRun,
    RunScores,
    check_scores,
    control_runs,
    main_runs,
)
from .selection import squeezenet_param_split
from .width import width_null_position

__all__ = [
    "CLAIMS",
    "PAPERS_REPORT",
    "VERDICTS",
    "verdict",
    "judge_claims",
    "claims_table",
    "numbers_of",
    "decided_by",
]

#: The claims of docs/PAPERS.md that :func:`judge_claims` judges.
CLAIMS = {
    "C1": "pruning 10-15% of SqueezeNet's filters slightly improves results",
    "C2": "with 5-image templates SqueezeNet holds its performance up to 30-40% removed",
    "C3": "with 1-image templates SqueezeNet degrades past about 15% of filters removed",
    "C4": "fine-tuning recovers part of the loss",
    "C5": "SqueezeNet loses 24% of its parameters (SqueezerFaceNet) at no appreciable loss",
    "C6": "across the networks a large share of filters can go with minimal loss",
    "C7": "the filters of the layers with the most output channels tend to be removed first",
}
#: What the papers report for each claim, in their own numbers (docs/PAPERS.md; paper 1:
#: SqueezerFaceNet, VGGFace2-Pose; paper 2: the comparative study, whose EER tables are not public).
PAPERS_REPORT = {
    "C1": "paper 1: 10-15% of filters removed, slightly lower EER",
    "C2": "paper 1: 5-image EER unchanged up to 30-40% of filters removed",
    "C3": "paper 1: 1-image EER rises past about 15% of filters removed",
    "C4": "papers 1, 2: fine-tuning recovers part of each step's loss",
    "C5": "paper 1: 1.24M -> 0.94M parameters (-24%) at no appreciable loss",
    "C6": "paper 2: a large share of filters, minimal loss (no public table)",
    "C7": "paper 2: the widest layers lose filters first (layer plots)",
}
#: What :func:`verdict` can say of a claim.
VERDICTS = ("holds", "refuted", "inconclusive")


def verdict(estimate: float, low: float, high: float, *, threshold: float, direction: str) -> str:
    """``"holds"`` when the interval lies entirely on the claim's side of ``threshold`` (strictly
    below it for ``direction="below"``, strictly above for ``"above"``), ``"refuted"`` when it
    lies entirely on the other side, ``"inconclusive"`` when it touches or straddles it (or is
    NaN; an infinite end is unbounded on that side). ``estimate`` is not used: only the interval
    decides. :func:`judge_claims` passes the leave-one-run-out envelope of a pooled interval
    (:func:`.pooling.pool`), so that a verdict holds without any one of its training runs."""
    if direction not in ("below", "above"):
        raise DataError(f"direction must be 'below' or 'above', not {direction!r}")
    if math.isnan(low) or math.isnan(high):
        return "inconclusive"
    below, above = high < threshold, low > threshold
    if direction == "below":
        return "holds" if below else "refuted" if above else "inconclusive"
    return "holds" if above else "refuted" if below else "inconclusive"


@dataclass
class _Judge:
    """What every claim needs: the main runs, their replicates (:mod:`.pooling`), the scores of
    both, the identity resamples of every fold and the tolerance."""

    runs: Mapping[str, PruneRun]
    scores: Mapping[str, RunScores]
    counts: Mapping[int, np.ndarray]
    tolerance: float
    level: float = 0.95
    replicate_runs: Mapping[str, PruneRun] = field(default_factory=dict)
    replicates: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _values: dict = field(default_factory=dict, repr=False)  # (run, row, metric) -> replicates

    def _members(self, key: str) -> dict[tuple[int, int], str]:
        """The runs that measure ``key``'s quantity, by training run: itself and its replicates."""
        everyone = {**self.replicate_runs, **self.runs}
        keys = [k for k in (key, *self.replicates.get(key, ())) if k in self.scores]
        return {unit_of(everyone[k]): k for k in keys}

    def units(self, key: str, row: tuple[int, str], metric: str) -> Units:
        """``metric`` at ``row`` on every training run of ``key``, with identity replicates."""
        out = {}
        for unit, k in self._members(key).items():
            if (k, row, metric) not in self._values:
                rs = self.scores[k]
                values = _metric_values(rs, rs.row(*row), metric, self.counts[unit[0]])
                self._values[k, row, metric] = values
            out[unit] = self._values[k, row, metric]
        return Units(out)

    def pool(self, units: Units) -> Pooled:
        ids = {f: c.shape[1] for f, c in self.counts.items()}
        return pool(units, identities=ids, level=self.level)

    def diff(self, a: tuple[str, tuple[int, str]], b: tuple[str, tuple[int, str]], metric: str):
        """``metric`` at run-row ``a`` minus at ``b``, paired within every training run both
        have, pooled over them (:func:`.pooling.pool`)."""
        ma, mb = self._members(a[0]), self._members(b[0])
        for unit in set(ma) & set(mb):
            _check_same_pairs(
                self.scores[ma[unit]], self.scores[mb[unit]], metric.partition("/")[0]
            )
        return self.pool(self.units(*a, metric) - self.units(*b, metric))


def _entry(
    cid: str, metric: str, iv: st.Interval, threshold: float, direction: str, detail: str
) -> dict:
    """One verdict line; ``cid`` like ``"C6/resnet50"`` takes its claim text from ``C6``; a
    pooled interval (:class:`.pooling.Pooled`) also says what it rests on, and its verdict is
    taken on the leave-one-run-out envelope when it has one (more than one training run)."""
    extra, low, high = {}, iv.low, iv.high
    if isinstance(iv, Pooled):
        extra = {k: v for k, v in iv.as_dict().items() if k not in ("estimate", "low", "high")}
        low, high = _decided_on(iv.low, iv.high, iv.loo_low, iv.loo_high)
    return {
        "id": cid,
        "claim": CLAIMS[cid.split("/")[0]],
        "metric": metric,
        "estimate": iv.estimate,
        "low": iv.low,
        "high": iv.high,
        "threshold": threshold,
        "verdict": verdict(iv.estimate, low, high, threshold=threshold, direction=direction),
        "detail": detail,
        **extra,
    }


def _decided_on(low: float, high: float, loo_low: float, loo_high: float) -> tuple[float, float]:
    """The ends a verdict is taken on: the leave-one-run-out envelope where there is one (NaN:
    a single training run), else the interval."""
    if math.isnan(loo_low) or math.isnan(loo_high):
        return low, high
    return loo_low, loo_high


def _unjudged(cid: str, metric: str, threshold: float, reason: str) -> dict:
    nan = st.Interval(float("nan"), float("nan"), float("nan"))
    return _entry(cid, metric, nan, threshold, "below", reason)


def _combine(cid: str, entries: Sequence[dict], threshold: float, what: str) -> dict:
    """All-networks verdict: holds if it holds for every entry, refuted if refuted for any,
    else inconclusive. The numbers shown are those of an entry that decides it (one whose own
    verdict is the overall one; of those, the largest upper end), so that the estimate and
    interval beside the verdict agree with it."""
    if not entries:
        return _unjudged(cid, "", threshold, f"no run to judge ({what})")
    verdicts = [e["verdict"] for e in entries]
    overall = (
        "refuted"
        if "refuted" in verdicts
        else "holds"
        if all(v == "holds" for v in verdicts)
        else "inconclusive"
    )
    deciding = [e for e in entries if e["verdict"] == overall] or list(entries)

    def upper(e: dict) -> float:  # the upper end the entry's verdict was taken on
        nan = math.nan
        high = _decided_on(e["low"], e["high"], e.get("loo_low", nan), e.get("loo_high", nan))[1]
        return high if math.isfinite(high) else math.inf

    worst = max(deciding, key=upper)
    names = ", ".join(f"{e['id']}: {e['verdict']}" for e in entries)
    return {
        **worst,
        "id": cid,
        "claim": CLAIMS[cid],
        "verdict": overall,
        "detail": f"{what}; numbers of {worst['id']}; {names}",
        "shown": worst["id"],  # the sub-line whose numbers these are (numbers_of)
    }


def _closest_row(history: pd.DataFrame, pct: float, stage: str = "pruned") -> pd.Series | None:
    rows = history[history["stage"] == stage]
    if rows.empty:
        return None
    return rows.loc[(rows["filters_removed_pct"] - pct).abs().idxmin()]


def _claim_at_share(
    j: _Judge, cid: str, key: str | None, pct: float, metric: str, threshold: float, direction: str
) -> dict:
    """C1-C3: ``metric`` at the pruned row closest to ``pct``% removed minus the original."""
    if key is None or key not in j.scores:
        return _unjudged(cid, metric, threshold, "no SqueezeNet main run with scores")
    row = _closest_row(j.runs[key].history, pct)
    if row is None:
        return _unjudged(cid, metric, threshold, f"{key} has no pruned row")
    at = (int(row["step"]), "pruned")
    iv = j.diff((key, at), (key, ORIGINAL), metric)
    detail = (
        f"{key} step {at[0]} ({row['filters_removed_pct']:.1f}% filters removed, target "
        f"{pct:g}%) minus original"
    )
    entry = _entry(cid, f"{metric} change", iv, threshold, direction, detail)
    return {**entry, **_where(at, row["filters_removed_pct"], "original")}


def _where(at: tuple[int, str], pct: float, against: str) -> dict:
    """Which row a claim reads and what it subtracts, for the figures that mark it on a curve."""
    return {
        "against": against,
        "at_step": at[0],
        "at_stage": at[1],
        "at_filters_removed_pct": float(pct),
    }


def _claim_c1_control(j: _Judge, key: str | None, control: str | None) -> list[dict]:
    """C1 against the equally trained control at the same step (pruned vs nothing removed)."""
    metric = "t1/eer"
    if key is None or control is None or key not in j.scores or control not in j.scores:
        return []
    row = _closest_row(j.runs[key].history, 12.5)
    if row is None:
        return []
    step = int(row["step"])
    rows = j.scores[control].rows
    stages = rows.loc[rows["step"] == step, "stage"].tolist()
    if not stages:
        return [_unjudged("C1/control", metric, 0.0, f"{control} has no row at step {step}")]
    stage = "pruned" if "pruned" in stages else stages[0]
    iv = j.diff((key, (step, "pruned")), (control, (step, stage)), metric)
    detail = f"{key} step {step} minus control {control} step {step} ({stage}), equally trained"
    entry = _entry("C1/control", f"{metric} change", iv, 0.0, "below", detail)
    return [{**entry, **_where((step, "pruned"), row["filters_removed_pct"], "control")}]


def _claim_c4(j: _Judge, main: Mapping[str, str], metric: str = "t1/eer") -> dict:
    """C4: per network, mean over steps of EER(pruned) - EER(finetuned) > 0; then combined."""
    entries = []
    for arch, key in main.items():
        if key not in j.scores:
            continue
        rows = j.scores[key].rows
        steps = sorted(
            set(rows.loc[rows.stage == "pruned", "step"])
            & set(rows.loc[rows.stage == "finetuned", "step"])
        )
        if not steps:
            entries.append(_unjudged(f"C4/{arch}", metric, 0.0, f"{key}: no fine-tuned step"))
            continue
        diffs = [
            j.units(key, (s, "pruned"), metric) - j.units(key, (s, "finetuned"), metric)
            for s in steps
        ]
        total = diffs[0]
        for d in diffs[1:]:
            total = total + d
        iv = j.pool(total * (1 / len(steps)))
        detail = f"{key}: mean over {len(steps)} steps of pruned minus fine-tuned"
        entries.append(_entry(f"C4/{arch}", metric, iv, 0.0, "above", detail))
    return [*entries, _combine("C4", entries, 0.0, "every network's fine-tuning must recover")]


def _paper_way_params(run: PruneRun) -> tuple[pd.Series, str]:
    """Each history row's parameter count as paper 1 counts it (a 1000-way classifier on the
    pruned inputs, :func:`squeezenet_param_split`) when the run is a standard SqueezeNet with a
    layer table; otherwise the count of our own network. Returns the counts and how counted."""
    if run.layers is not None:
        paper_net = build_model("squeezenet", num_classes=1000)
        full = count_parameters(paper_net, include_classifier=False)
        try:
            split = squeezenet_param_split(run.history, run.layers, full_backbone_params=full)
        except DataError:
            pass
        else:
            return split["params_paper_classes"], "counted as paper 1 counts (1000-way classifier)"
    return run.history["params"], "counted on our network"


def _claim_c5(
    j: _Judge,
    key: str | None,
    metric: str = "t1/eer",
    reduction: float = 0.24,
    stage: str = "finetuned",
) -> dict:
    """C5, one comparison fixed in advance: the first ``stage`` row whose parameter cut, counted
    as the paper counts (:func:`_paper_way_params`), reaches the paper's ``reduction`` (1.24M ->
    0.94M), minus the original; holds when the interval stays below +tolerance. Scanning every
    row for one that passes would pass by chance far more often than the level says."""
    tol = j.tolerance
    if key is None or key not in j.scores:
        return _unjudged("C5", metric, tol, "no SqueezeNet main run with scores")
    run = j.runs[key]
    params, counted = _paper_way_params(run)
    cut = 1 - params / params[run.history["stage"] == "original"].iloc[0]
    rows = run.history["stage"] == stage
    if not rows.any():
        return _unjudged("C5", metric, tol, f"{key} has no {stage!r} rows")
    reaching = cut[rows & (cut >= reduction)]
    at_row = reaching.idxmin() if len(reaching) else cut[rows].idxmax()
    at = (int(run.history.loc[at_row, "step"]), stage)
    iv = j.diff((key, at), (key, ORIGINAL), metric)
    detail = (
        f"{key} step {at[0]} ({stage}): {100 * cut[at_row]:.1f}% fewer parameters, {counted} "
        f"(claim: {100 * reduction:.0f}%), minus original"
        + ("" if len(reaching) else "; no step reaches the claim's cut: the largest one shown")
    )
    entry = _entry("C5", f"{metric} change", iv, tol, "below", detail)
    pct = run.history.loc[at_row, "filters_removed_pct"]
    return {**entry, **_where(at, pct, "original")}


def _claim_c6(j: _Judge, main: Mapping[str, str], metric: str = "t1/eer", share: float = 50.0):
    """C6: at each network's final row (>= ``share``% removed), EER change below +tolerance."""
    entries = []
    for arch, key in main.items():
        if key not in j.scores:
            continue
        hist = j.runs[key].history
        final = hist[hist.stage == "final"]
        row = (final if len(final) else hist).iloc[-1]
        at, pct = (int(row["step"]), str(row["stage"])), float(row["filters_removed_pct"])
        iv = j.diff((key, at), (key, ORIGINAL), metric)
        entry = _entry(
            f"C6/{arch}",
            f"{metric} change",
            iv,
            j.tolerance,
            "below",
            f"{key} step {at[0]} ({at[1]}, {pct:.1f}% filters removed) minus original",
        )
        if pct < share:
            entry["verdict"] = "inconclusive"
            entry["detail"] += f"; fewer than {share:g}% removed: not a large share"
        entries.append(entry)
    return [*entries, _combine("C6", entries, j.tolerance, "must hold for every network")]


def _claim_c7(
    j: _Judge, main: Mapping[str, str], *, min_channels: int, n_null: int, seed: int
) -> list[dict]:
    """C7 for every run with a layer table (controls left out), then combined over main runs."""
    entries = {}
    for key, run in j.runs.items():
        if run.criterion == CONTROL_CRITERION or run.layers is None:
            continue
        # normalised scores are judged against random scores normalised the same way: the
        # normalisation alone makes wide layers lose more (docs/PAPERS.md, C7)
        normalised = run.scores_normalised
        pos = width_null_position(
            run.layers,
            min_channels=int(run.summary.get("min_channels", min_channels)),
            channel_multiple=int(run.summary.get("channel_multiple", 1)),
            normalised=normalised,
            per_step=run.summary.get("channels_per_step"),
            n=n_null,
            seed=seed,
        )
        metric = f"spearman rho (width, share removed) vs the {pos['null']} null [2.5%, 97.5%]"
        iv = st.Interval(pos["rho"], pos["rho"], pos["rho"])
        entry = _entry(f"C7/{key}", metric, iv, pos["high"], "above", "")
        entry["verdict"] = (
            "holds"
            if pos["rho"] > pos["high"]
            else "refuted"
            if pos["rho"] < pos["low"]
            else "inconclusive"
        )  # NaN rho (nothing removed) compares False both ways: inconclusive
        entry.update(low=pos["low"], high=pos["high"], null=pos["null"])
        for name in ("uniform", "normalised"):
            entry[f"null_{name}"] = [pos[name]["low"], pos[name]["high"]]
        entry["detail"] = (
            f"{run.label}: rho {pos['rho']:.3f}; {pos['null']} null median "
            f"{pos['median']:.3f}, two-sided p {pos['p']:.4f}; uniform null "
            f"[{pos['uniform']['low']:.3f}, {pos['uniform']['high']:.3f}], normalised null "
            f"[{pos['normalised']['low']:.3f}, {pos['normalised']['high']:.3f}]; "
            f"{pos['removed']} channels removed"
        )
        entries[key] = entry
    mains = [entries[k] for k in main.values() if k in entries]
    return [*entries.values(), _combine("C7", mains, float("nan"), "over the main runs")]


def judge_claims(
    runs: Mapping[str, PruneRun],
    scores: Mapping[str, RunScores],
    *,
    tolerance: float,
    counts: np.ndarray | Mapping[int, np.ndarray],
    replicates: Mapping[str, PruneRun] | None = None,
    controls: Mapping[str, str] | None = None,
    main: Mapping[str, str] | None = None,
    squeezenet: str = "squeezenet",
    min_channels: int = 1,
    n_null: int = 10000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict]:
    """Verdicts on the claims C1-C7 of docs/PAPERS.md, one dict per line: ``id``, ``claim``,
    ``metric``, ``estimate``, ``low``, ``high`` (the ``level`` interval of
    :func:`.pooling.pool`: identity resamples ``counts`` of every fold, ``{fold: counts}``
    (:func:`.pooling.fold_counts`; one array when every run is one fold), paired: both sides of a
    difference on the same resamples), ``threshold``, ``verdict`` (:func:`verdict`), ``detail``
    and what the interval rests on (``identities``, ``folds``, ``training_runs``,
    ``identity_low``, ``identity_high``, ``run_sd``, ``run_share``, and ``loo_low``,
    ``loo_high``: the leave-one-run-out envelope the verdict is taken on); C1-C3, C5 and
    C1/control also say which row they read and what they subtract (``against``: original or
    control, ``at_step``, ``at_stage``, ``at_filters_removed_pct``). Sub-lines (``C4/<arch>``,
    ``C6/<arch>``, ``C7/<run>``, ``C1/control``) come before their combined line.

    ``replicates``: runs repeating runs of ``runs`` on other folds or seeds
    (:func:`.pooling.replicate_groups`); the claims C1-C6 pool them with the run they repeat.

    ``main`` defaults to :func:`main_runs`, ``controls`` to :func:`control_runs`; runs without
    scores are left out (a claim whose run is missing is ``inconclusive``). ``tolerance`` is
    the EER increase still counted as "no appreciable loss".
    """
    main = dict(main_runs(runs) if main is None else main)
    controls = control_runs(runs) if controls is None else controls
    replicates = dict(replicates or {})
    everyone = {**replicates, **runs}
    for key, rs in scores.items():
        if key in everyone:
            check_scores(everyone[key], rs)
    if not isinstance(counts, Mapping):
        counts = {unit_of(r)[0]: counts for r in everyone.values()}
    groups = replicate_groups(runs, replicates)
    j = _Judge(runs, scores, counts, tolerance, level, replicates, groups)
    sq = main.get(squeezenet)
    tol = tolerance
    return [
        _claim_at_share(j, "C1", sq, 12.5, "t1/eer", 0.0, "below"),
        *_claim_c1_control(j, sq, controls.get(squeezenet)),
        _claim_at_share(j, "C2", sq, 35.0, "t5/eer", tol, "below"),
        # "degrades" is any rise the interval can show, as "improves" (C1) is any fall
        _claim_at_share(j, "C3", sq, 30.0, "t1/eer", 0.0, "above"),
        *_claim_c4(j, main),
        _claim_c5(j, sq),
        *_claim_c6(j, main),
        *_claim_c7(j, main, min_channels=min_channels, n_null=n_null, seed=seed),
    ]


def _claims_compact(claims: Sequence[Mapping]) -> dict:
    """The combined line of every claim (ids without "/"): what the papers report, verdict,
    estimate, interval, metric, threshold and what the interval rests on; ``parts``: its
    sub-lines (per network, per run, against the control) by name, each verdict, estimate, ci."""
    parts: dict[str, dict] = {}
    for c in claims:
        cid, _, part = c["id"].partition("/")
        if part:
            parts.setdefault(cid, {})[part] = {
                "verdict": c["verdict"],
                "estimate": finite_or_none(c["estimate"]),
                "ci": _ci(c["low"], c["high"]),
            }
    return {
        c["id"]: {
            "papers": PAPERS_REPORT.get(c["id"], CLAIMS.get(c["id"], c["id"])),
            "verdict": c["verdict"],
            "estimate": finite_or_none(c["estimate"]),
            "ci": _ci(c["low"], c["high"]),
            "metric": c["metric"],
            "threshold": finite_or_none(c["threshold"]),
            **{k: c[k] for k in ("identities", "training_runs") if k in c},
            **({"run_share": finite_or_none(c["run_share"])} if "run_share" in c else {}),
            # the verdict's interval: the envelope over leaving each training run out
            **(
                {"without_one_run": [finite_or_none(c["loo_low"]), finite_or_none(c["loo_high"])]}
                if not math.isnan(c.get("loo_low", math.nan))
                else {}
            ),
            **{k: c[k] for k in ("null", "null_uniform", "null_normalised") if k in c},
            # a claim over several networks shows one's numbers: which (the sub-line's name)
            **({"numbers_of": c["shown"].partition("/")[2]} if c.get("shown") else {}),
            **({"parts": parts[c["id"]]} if c["id"] in parts else {}),
        }
        for c in claims
        if "/" not in c["id"]
    }


def claims_table(
    claims: Mapping[str, Mapping], lines: Sequence[Mapping] | None = None
) -> pd.DataFrame:
    """The closing table of notebook 04 from ``summarize(...).compact["claims"]``: per claim
    what the papers report, the verdict, "estimate [95% interval]", the interval's envelope
    without any one training run (what the verdict is taken on) and what was measured; with
    ``lines`` (:func:`judge_claims`) also "numbers of": the network or run whose numbers a
    combined claim shows (:func:`numbers_of`; empty for a claim judged on one run)."""
    deciding = numbers_of(lines) if lines is not None else {}
    digits = {cid: readings.claim_digits(c) for cid, c in claims.items()}
    rows = [
        {
            "claim": cid,
            "the papers report": c["papers"],
            "verdict": c["verdict"],
            "ours: estimate [95% interval; C7: its null band]": fmt_interval(
                c["estimate"], *(c["ci"] or [None, None]), digits=digits[cid], sign=True
            ),
            "without any one run": readings.fmt_envelope(c.get("without_one_run"), digits[cid]),
            "threshold": (
                "its null band"
                if c["metric"].startswith("spearman")
                else ""
                if c.get("threshold") is None
                else f"{c['threshold']:+.2f}"
            ),
            "identities x runs": (
                f"{c['identities']} x {c['training_runs']}" if "training_runs" in c else ""
            ),
            "measured as": c["metric"],
            **({"numbers of": deciding.get(cid, "")} if lines is not None else {}),
        }
        for cid, c in claims.items()
    ]
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def numbers_of(lines: Sequence[Mapping]) -> dict[str, str]:
    """For every combined claim of ``lines`` (:func:`judge_claims`: ``C4``, ``C6``, ``C7``), what
    the sub-line ``<claim>/<what>`` whose numbers it shows is about (a network for C4 and C6, a
    run for C7), from its ``shown`` (:func:`_combine` shows the numbers of one entry whose
    verdict is the overall one). Claims judged on one run (C1-C3, C5) are left out."""
    out = {}
    for line in lines:
        cid, shown = line["id"], str(line.get("shown", ""))
        if "/" not in cid and shown.startswith(f"{cid}/"):
            out[cid] = shown.partition("/")[2]
    return out


def decided_by(lines: Sequence[Mapping], main: Mapping[str, str]) -> dict[str, str]:
    """The combined claims of ``lines`` that one network decides alone: its sub-line (of those
    combined, the ``main`` networks or runs) is the only one with the overall verdict, and the
    combined line shows its numbers (:func:`numbers_of`); ``{claim: network or run}``. A claim
    that every network holds, or that several refute, is left out."""
    combined = {line["id"]: line for line in lines if "/" not in line["id"]}
    members = set(main) | set(main.values())
    out = {}
    for cid, what in numbers_of(lines).items():
        agree = [
            sub
            for sub in lines
            if sub["id"].startswith(f"{cid}/")
            and sub["id"].partition("/")[2] in members
            and sub["verdict"] == combined[cid]["verdict"]
        ]
        if len(agree) == 1 and agree[0]["id"] == f"{cid}/{what}":
            out[cid] = what
    return out
