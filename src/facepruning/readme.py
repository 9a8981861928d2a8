"""README numbers from the metrics: the blocks between marker comments, regenerated.

``python -m facepruning readme`` (run by ``make repro`` after ``dvc repro``) reads
``metrics/analysis.json`` (written by notebook 04, :func:`facepruning.analysis.summarize`) and
rewrites, in ``README.md``, whatever lies between each pair of markers::

    <!-- results:begin --> ... <!-- results:end -->     per-network table, SqueezerFaceNet pick
    <!-- criteria:begin --> ... <!-- criteria:end -->   the criteria on SqueezeNet, one paragraph
    <!-- claims:begin --> ... <!-- claims:end -->       the papers' claims against ours

Everything outside the markers stays as written. The text is a pure function of the JSON, so a
test can regenerate it and fail when README.md was left behind (``--check``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

from .artifacts import read_json, write_text
from .errors import DataError
from .plots.style import NETWORK_LABELS

__all__ = ["BLOCKS", "SCHEMA", "render", "replace_blocks", "update_readme"]

#: The analysis.json layout this module reads (``analysis.SCHEMA``; kept here so the README
#: generator never imports the analysis code and its dependencies).
SCHEMA = 2
BLOCKS = ("results", "criteria", "claims")
#: How each claim is worded in the papers (docs/PAPERS.md).
PAPERS = {
    "C1": "pruning 10-15% of SqueezeNet's filters slightly improves results",
    "C2": "with 5-image templates SqueezeNet holds its performance up to 30-40% removed",
    "C3": "with 1-image templates SqueezeNet degrades past about 15% removed",
    "C4": "fine-tuning recovers part of the loss",
    "C5": "SqueezeNet 1.24M -> 0.94M parameters (SqueezerFaceNet) at no appreciable loss",
    "C6": "across the three networks a large share of filters can go with minimal loss",
    "C7": "the filters of the layers with the most output channels tend to be removed first",
}


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


def _claims(a: Mapping) -> str:
    lines = [
        "| | the papers report | ours: estimate [95% interval] | verdict |",
        "|---|---|---|---|",
    ]
    for cid, c in sorted(a["claims"].items(), key=lambda kv: int(kv[0][1:])):
        if c["metric"].startswith("spearman"):
            ours = f"ρ {_num(c['estimate'], '+.2f')} ({_nulls(c)})"
        else:
            ours = f"{_num(c['estimate'], '+.3f')}{_ci(c['ci'], '+.3f')} ({c['metric']})"
        if c.get("numbers_of"):
            arch, _, variant = c["numbers_of"].partition("-")
            name = NETWORK_LABELS.get(arch, arch) + (f", {variant}" if variant else "")
            ours += f"; numbers of {name}, one of the networks with this verdict"
        lines.append(f"| {cid} | {PAPERS.get(cid, cid)} | {ours} | {c['verdict']} |")
    return "\n".join(lines)


def render(analysis: Mapping) -> dict[str, str]:
    """The text of every block of :data:`BLOCKS` from an analysis.json of :data:`SCHEMA`."""
    if analysis.get("schema") != SCHEMA:
        raise DataError(
            f"analysis.json has schema {analysis.get('schema')!r}, not {SCHEMA}: it was written by "
            "an older notebook 04; rerun the analysis stage (dvc repro analysis)"
        )
    return {
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
    """Regenerate the blocks of ``readme`` from ``metrics``; True when the text changed. With
    ``check`` nothing is written: DataError when the README is out of date."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    new = replace_blocks(text, render(read_json(metrics)))
    if new == text:
        return False
    if check:
        raise DataError(f"{path} is out of date with {metrics}: run python -m facepruning readme")
    write_text(path, new)
    return True
