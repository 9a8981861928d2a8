"""README numbers from the metrics: the blocks between marker comments, regenerated.

``python -m facepruning readme`` (run by ``make repro`` after ``dvc repro``) reads
``metrics/analysis.json`` (written by notebook 04, :func:`facepruning.analysis.summarize`) and
rewrites, in ``README.md``, whatever lies between each pair of markers::

    <!-- findings:begin --> ... <!-- findings:end -->   what the study found, in three sentences
    <!-- evidence:begin --> ... <!-- evidence:end -->   what the intervals rest on, their coverage
    <!-- results:begin --> ... <!-- results:end -->     per-network table, SqueezerFaceNet pick
    <!-- criteria:begin --> ... <!-- criteria:end -->   the criteria on SqueezeNet, one paragraph
    <!-- claims:begin --> ... <!-- claims:end -->       the papers' claims against ours

docs/PAPERS.md, beside the README, carries the ``evidence`` block too (:data:`DOCUMENTS`).
Everything outside the markers stays as written. The text is a pure function of the JSON, so a
test can regenerate it and fail when a file was left behind (``--check``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .artifacts import read_json, write_text
from .errors import DataError
from .plots.style import NETWORK_LABELS
from .readings import claim_digits, fmt_envelope

__all__ = [
    "BLOCKS",
    "DOCUMENTS",
    "SCHEMA",
    "read_inputs",
    "render",
    "replace_blocks",
    "update_readme",
]

#: The analysis.json layout this module reads (``analysis.SCHEMA``; kept here so the README
#: generator never imports the analysis code and its dependencies).
SCHEMA = 3
BLOCKS = ("findings", "evidence", "results", "criteria", "claims")
#: The files ``python -m facepruning readme`` regenerates, and the blocks each holds.
DOCUMENTS = {"README.md": BLOCKS, "docs/PAPERS.md": ("evidence",)}


def _num(value, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _ci(ci, fmt: str = ".3f") -> str:
    return "" if not ci else f" [{_num(ci[0], fmt)}, {_num(ci[1], fmt)}]"


def _count(value) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{int(value):,}"


def _before_after(pair, fmt=None) -> str:
    """``"743,834 → 191,608"``; both in millions when the larger is (``"23.57M → 0.65M"``)."""
    if not pair or any(v is None for v in pair):
        return "n/a"
    if fmt is None:
        millions = max(pair) >= 1e6
        fmt = (lambda v: f"{v / 1e6:.2f}M") if millions else (lambda v: f"{int(v):,}")
    return f"{fmt(pair[0])} → {fmt(pair[1])}"


def _metric(item: Mapping | None, key: str = "original", with_ci: bool = True) -> str:
    if not item:
        return "n/a"
    return _num(item.get(key)) + (_ci(item.get(f"{key}_ci")) if with_ci else "")


def _results(a: Mapping) -> str:
    tol = a["eer_tolerance"]
    lines = [
        "| network | parameters | filters removed | EER, 1-image: before → final [95% interval] "
        "| TAR at FAR = 1%, 1-image | EER, 5-image | descriptor size | 1-image EER minus the "
        "equally trained control | pruned, point estimate of the 1-image EER within +"
        f"{tol:g} up to |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arch, n in a["networks"].items():
        t1, tar, t5 = n.get("t1_eer"), n.get("t1_tar_far1"), n.get("t5_eer")
        control = (
            f"{_num(t1['vs_control'], '+.3f')}{_ci(t1.get('vs_control_ci'), '+.3f')}"
            if t1 and t1.get("vs_control") is not None
            else "no control"
        )
        holds = n.get("holds_to_pct")
        lines.append(
            f"| {NETWORK_LABELS.get(arch, arch)} | {_before_after(n.get('params'))} "
            f"| {_num(n.get('filters_removed_pct'), '.1f')}% "
            f"| {_metric(t1)} → {_metric(t1, 'final')} "
            f"| {_metric(tar, with_ci=False)} → {_metric(tar, 'final', False)} "
            f"| {_metric(t5, with_ci=False)} → {_metric(t5, 'final', False)} "
            f"| {_before_after(n.get('descriptor'), lambda v: _num(v, '.0f'))} "
            f"| {control} | {_num(holds, '.1f')}% removed |"
        )
    pick = a.get("squeezerfacenet")
    if pick:
        lines += [
            "",
            f"SqueezerFaceNet pick (the smallest SqueezeNet whose 1-image EER, as pruned or after "
            f"fine-tuning, stays within +{tol:g} of the original at every step up to it, chosen "
            f"on {pick.get('selected_on_what', 'the test identities')}): step {pick['step']} "
            f"({pick['stage']}), {_count(pick['params'])} parameters "
            f"({_num(pick['params_saved_pct'], '.1f')}% fewer), "
            f"{_num(pick['filters_removed_pct'], '.1f')}% of filters removed; on the test "
            f"identities EER {_num(pick['eer'])}{_ci(pick.get('eer_ci'))}, "
            f"{_num(pick.get('eer_change'), '+.3f')}{_ci(pick.get('eer_change_ci'), '+.3f')} "
            "from the original.",
        ]
    elif "squeezenet" in a["networks"]:
        lines += ["", f"No pruned SqueezeNet keeps its 1-image EER within +{tol:g}."]
    return "\n".join(lines)


def _criteria(a: Mapping) -> str:
    c = a.get("criteria")
    if not c:
        return "Criteria on SqueezeNet: fewer than two criteria were run."
    ref = c["reference"]
    parts = []
    for variant, v in sorted(
        c["variants"].items(), key=lambda kv: (kv[1]["mean"] is None, kv[1]["mean"] or 0)
    ):
        diff = (
            f" ({_num(v['diff'], '+.3f')}{_ci(v.get('diff_ci'), '+.3f')} vs {ref})"
            if v.get("diff") is not None
            else ""
        )
        parts.append(f"{variant} {_num(v['mean'])}{diff}")
    shares = c["shares"]
    return (
        f"Criteria on SqueezeNet (mean 1-image EER of the {c['stage']} networks over "
        f"{len(shares)} matched shares of filters removed, {shares[0]:.0f}-{shares[-1]:.0f}%; "
        f"paired differences with 95% identity-bootstrap intervals): " + "; ".join(parts) + "."
    )


def _nulls(c: Mapping) -> str:
    """C7's bands: the null the verdict is taken against first, then the other."""
    used = c.get("null", "uniform")
    names = {"normalised": "random scores normalised per layer", "uniform": "uniform random"}
    bands = [f"{names[used]}: {_ci(c['ci'], '+.2f')[1:]}, the verdict's null"]
    other = "uniform" if used == "normalised" else "normalised"
    if c.get(f"null_{other}") and None not in c[f"null_{other}"]:
        bands.append(f"{names[other]}: {_ci(c[f'null_{other}'], '+.2f')[1:]}")
    return "; ".join(bands)


def _rests_on(c: Mapping, digits: int = 3) -> str:
    """Identities and training runs, and the interval's envelope without any one run (what the
    verdict is taken on, where there are several)."""
    if "training_runs" not in c:
        return ""
    runs = c["training_runs"]
    text = f"{c['identities']} identities, {runs} training run{'s' if runs > 1 else ''}"
    if c.get("without_one_run"):
        text += f"; without any one run {fmt_envelope(c['without_one_run'], digits)}"
    return text


def _network(key: str) -> str:
    arch = key.partition("-")[0]
    return NETWORK_LABELS.get(arch, arch)


def _parts(c: Mapping, main: Mapping[str, str], fmt: str) -> list[str]:
    """The sub-lines of a claim judged per network (C4, C6) or per main run (C7)."""
    shown = [k for k in c.get("parts", {}) if k in main or k in main.values()]
    return [
        f"{_network(k)} {_num(p['estimate'], fmt)}{_ci(p['ci'], fmt)}: {p['verdict']}"
        for k in shown
        for p in [c["parts"][k]]
    ]


def _claims(a: Mapping) -> str:
    lines = [
        "| | the papers report | ours: estimate [95% interval; C7: its null band] | threshold "
        "| rests on | verdict |",
        "|---|---|---|---|---|---|",
    ]
    main = a.get("main_runs", {})
    for cid, c in sorted(a["claims"].items(), key=lambda kv: int(kv[0][1:])):
        rho = c["metric"].startswith("spearman")
        digits = claim_digits(c)
        fmt = "+.2f" if rho else f"+.{digits}f"
        parts = _parts(c, main, fmt)
        if rho:
            ours, threshold = f"ρ {_num(c['estimate'], '+.2f')} ({_nulls(c)})", "the null band"
        else:
            ours = f"{_num(c['estimate'], fmt)}{_ci(c['ci'], fmt)} ({c['metric']})"
            threshold = _num(c.get("threshold"), "+.2f")
        if c.get("numbers_of"):
            name = _network(c["numbers_of"])
            variant = c["numbers_of"].partition("-")[2]
            ours += f"; numbers of {name}{', ' + variant if variant else ''}"
        if len(parts) > 1:
            what = "ρ against the band of its null" if rho else "per network"
            ours += f"; {what}: " + "; ".join(parts)
        if "control" in c.get("parts", {}):
            p = c["parts"]["control"]
            ours += (
                f"; against the equally trained control: {_num(p['estimate'], fmt)}"
                f"{_ci(p['ci'], fmt)}, {p['verdict']}"
            )
        row = [cid, c["papers"], ours, threshold, _rests_on(c, digits), c["verdict"]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _side(ci) -> str:
    """How an EER difference from the control reads, by where its interval lies."""
    if not ci or None in ci:
        return "without an interval against the control's"
    if ci[0] > 0:
        return "worse than the control's"
    return "better than the control's" if ci[1] < 0 else "not distinguishable from the control's"


def _against_control(a: Mapping, curves: pd.DataFrame | None) -> str:
    """One sentence: each final network against its equally trained control, then (with
    ``curves``, notebook 04's ``change_curves`` table) at how many steps, right after the step
    and pooled over the network's training runs, the interval lies on the worse side."""
    finals, sides, identities = [], set(), set()
    for arch, n in a["networks"].items():
        t1 = n.get("t1_eer") or {}
        if t1.get("vs_control") is None:
            continue
        identities.add(n.get("test_identities"))
        side = _side(t1.get("vs_control_ci"))
        sides.add(side)
        finals.append(
            (
                f"{NETWORK_LABELS.get(arch, arch)} "
                f"{_num(t1['vs_control'], '+.3f')}{_ci(t1.get('vs_control_ci'), '+.3f')} with "
                f"{_num(n['filters_removed_pct'], '.0f')}% of filters removed",
                side,
            )
        )
    if not finals:
        return ""
    where = (
        f"{identities.pop()} test identities, one training run"
        if len(identities) == 1 and None not in identities
        else "fold 0, one training run"
    )
    if len(finals) == 1:
        final, side = finals[0]
        listed = f"network (its main run: {where}) is {side}: {final}"
    elif len(sides) == 1:
        listed = f"networks (each network's main run: {where}) are {_each(sides.pop())}: " + (
            ", ".join(final for final, _ in finals)
        )
    else:
        listed = f"networks (each network's main run: {where}) are: " + (
            ", ".join(f"{final}, {side}" for final, side in finals)
        )
    text = (
        "Against a control trained exactly as long with nothing removed (1-image EER, lower is "
        f"better), the final Taylor-pruned {listed}"
    )
    steps = curves[(curves["against"] == "control") & (curves["metric"] == "t1/eer")] if (
        curves is not None and len(curves)
    ) else None  # fmt: skip
    if steps is not None and len(steps):
        worse, none_worse = [], []
        for arch, rows in steps.groupby("arch", sort=False):
            judged = rows[rows["low"].notna() & rows["high"].notna()].sort_values("step")
            bad = judged[[_side([lo, hi]).startswith("worse") for lo, hi in zip(
                judged["low"], judged["high"], strict=True)]]  # fmt: skip
            name = NETWORK_LABELS.get(arch, arch)
            if bad.empty:
                none_worse.append(name)
                continue
            runs = int(rows["training_runs"].iloc[-1])
            worse.append(
                f"{name} is worse at {len(bad)} of {len(judged)} steps, from "
                f"{bad['filters_removed_pct'].min():.0f}% of filters removed ({runs} training "
                f"run{'s' if runs > 1 else ''}, {int(rows['identities'].iloc[-1])} test "
                "identities)"
            )
        if none_worse:
            worse.append(
                f"{_and(none_worse)} at none" if worse else f"{_and(none_worse)} at none of them"
            )
        text += (
            "; right after each pruning step, against the control at the same step (pointwise "
            "95% intervals pooled over every training run of the network), " + ", ".join(worse)
        )
    return text + "."


def _each(side: str) -> str:
    """``_side``'s reading of one network, said of each of several."""
    return "each " + side.replace("the control's", "its control")


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _findings(a: Mapping, curves: pd.DataFrame | None = None) -> str:
    """Three sentences: the claims' tally, what pruning did against the control
    (:func:`_against_control`), the pick."""
    verdicts: dict[str, list[str]] = {}
    for cid, c in sorted(a["claims"].items(), key=lambda kv: int(kv[0][1:])):
        verdicts.setdefault(c["verdict"], []).append(cid)
    against_null = {  # a verdict read against a null band, not an interval
        cid: ", against random scores put through the run's own per-layer normalisation"
        for cid, c in a["claims"].items()
        if c.get("null") == "normalised"
    }
    tally = ", ".join(
        f"{len(ids)} {v} ({', '.join(i + against_null.get(i, '') for i in ids)})"
        for v in ("holds", "refuted", "inconclusive")
        if (ids := verdicts.get(v))
    )
    text = [
        f"Of the papers' {len(a['claims'])} claims, judged on these data with 95% intervals "
        "that pool every fold and seed run, and required to hold without any one of those "
        f"runs: {tally}.",
        _against_control(a, curves),
    ]
    pick = a.get("squeezerfacenet")
    if pick:
        text.append(
            f"The SqueezerFaceNet pick, chosen on validation images, has "
            f"{_num(pick['params_saved_pct'], '.0f')}% fewer parameters than SqueezeNet and a "
            f"1-image EER {_num(pick.get('eer_change'), '+.3f')}"
            f"{_ci(pick.get('eer_change_ci'), '+.3f')} from the original's."
        )
    return " ".join(t for t in text if t)


def _evidence(a: Mapping) -> str:
    """What every interval rests on: identities and training runs per network, the interval
    method and its measured coverage."""
    ev = a.get("evidence")
    if not ev:
        return "(no evidence record in metrics/analysis.json: rerun the analysis stage)"
    nets = []
    for arch, n in ev["networks"].items():
        folds, seeds = n["folds"], n["seeds"]
        nets.append(
            f"{NETWORK_LABELS.get(arch, arch)} on {n['test_identities']} test identities "
            f"({len(folds)} fold{'s' if len(folds) > 1 else ''} of held-out identities, "
            f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}: "
            f"{n['training_runs']} training run{'s' if n['training_runs'] > 1 else ''})"
        )
    cover = "; ".join(
        f"{c['pooled']:.1%} with {c['identities']} identities in {c['folds']} "
        f"fold{'s' if c['folds'] > 1 else ''} (the plain percentile interval: "
        f"{c['percentile']:.1%})"
        for c in ev["coverage"]
    )
    return (
        "The claims rest on " + "; ".join(nets) + ". Every identity of a fold is tested by a "
        "network that never saw it. Intervals: " + ev["interval_method"] + f", "
        f"{ev['resamples']:,} resamples. On simulated verification sets of this size with a known "
        f"population EER, the 95% interval contained it in {cover}."
    )


def read_inputs(metrics: str | os.PathLike) -> tuple[dict, pd.DataFrame | None]:
    """What :func:`render` reads: ``metrics`` (analysis.json) and, when notebook 04 wrote it
    beside it, its ``change_curves`` table (``metrics/analysis/change_curves.csv``)."""
    table = Path(metrics).with_suffix("") / "change_curves.csv"  # write_summary's layout
    return read_json(metrics), pd.read_csv(table) if table.is_file() else None


def render(analysis: Mapping, curves: pd.DataFrame | None = None) -> dict[str, str]:
    """The text of every block of :data:`BLOCKS` from an analysis.json of :data:`SCHEMA` and,
    when given, notebook 04's ``change_curves`` table."""
    if analysis.get("schema") != SCHEMA:
        raise DataError(
            f"analysis.json has schema {analysis.get('schema')!r}, not {SCHEMA}: it was written by "
            "an older notebook 04; rerun the analysis stage (dvc repro analysis)"
        )
    return {
        "findings": _findings(analysis, curves),
        "evidence": _evidence(analysis),
        "results": _results(analysis),
        "criteria": _criteria(analysis),
        "claims": _claims(analysis),
    }


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}:begin -->\n)(.*?)(<!-- {name}:end -->)", flags=re.DOTALL)


def replace_blocks(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with each ``<!-- name:begin -->`` ... ``<!-- name:end -->`` block's inside
    replaced by ``blocks[name]``; DataError when a pair is missing or appears twice."""
    for name, body in blocks.items():
        pattern = _pattern(name)
        found = len(pattern.findall(text))
        if found != 1:
            raise DataError(
                f"README needs exactly one <!-- {name}:begin --> ... <!-- {name}:end --> pair "
                f"(each marker on a line of its own), found {found}"
            )
        text = pattern.sub(lambda m, b=body: f"{m.group(1)}{b.rstrip()}\n{m.group(3)}", text)
    return text


def update_readme(
    readme: str | os.PathLike = "README.md",
    metrics: str | os.PathLike = "metrics/analysis.json",
    *,
    check: bool = False,
) -> bool:
    """Regenerate the blocks of ``readme`` and of the other :data:`DOCUMENTS` found beside it
    (``docs/PAPERS.md`` relative to its folder) from ``metrics``; True when any text changed.
    With ``check`` nothing is written: DataError when a file is out of date."""
    rendered = render(*read_inputs(metrics))
    root = Path(readme).parent
    documents = {Path(readme): BLOCKS}
    documents |= {root / name: b for name, b in DOCUMENTS.items() if name != "README.md"}
    changed = False
    for path, blocks in documents.items():
        if path != Path(readme) and not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        new = replace_blocks(text, {name: rendered[name] for name in blocks})
        if new == text:
            continue
        if check:
            raise DataError(
                f"{path} is out of date with {metrics}: run python -m facepruning readme"
            )
        write_text(path, new)
        changed = True
    return changed
