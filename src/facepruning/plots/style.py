"""What every stage's figures share: colours, line styles, readable names, the theme and
:func:`save_figure`.

Importing this module selects matplotlib's backend (headless ``Agg`` unless ``MPLBACKEND`` says
otherwise) and nothing else: :func:`apply_theme` sets the look, and the stages' figure modules
call it when imported. :func:`save_figure` writes figures byte for byte reproducibly (no version
strings or dates in the file), so an unchanged figure leaves DVC outputs and git unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless default; Jupyter sets its own

from ..artifacts import atomic_path  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "OKABE_ITO",
    "STAGE_STYLE",
    "STAGE_MARKER",
    "STAGE_LABEL",
    "CONTROL_STAGE_LABEL",
    "RATE_MIN_SPAN",
    "REFERENCE",
    "METRIC_LABELS",
    "NETWORK_LABELS",
    "LABELS",
    "apply_theme",
    "label",
    "palette",
    "COLOR_OF",
    "save_figure",
]

#: Okabe & Ito's colour-blind-safe palette (black left out: it marks references).
OKABE_ITO = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
]
STAGE_STYLE = {"pruned": "-", "finetuned": "--", "original": ":", "final": "-."}
STAGE_MARKER = {"pruned": "o", "finetuned": "s", "original": "o", "final": "*"}
STAGE_LABEL = {"pruned": "pruned", "finetuned": "pruned + fine-tuned"}
#: The same rows of a no-pruning control, where nothing is pruned.
CONTROL_STAGE_LABEL = {"pruned": "before fine-tuning", "finetuned": "after fine-tuning"}
#: A rate's axis (EER, accuracy, TAR) spans at least this much, so that a flat curve's noise does
#: not look like a trend.
RATE_MIN_SPAN = 0.1
#: Colour of reference marks (original level, tolerance band, controls).
REFERENCE = "#555555"
#: Words for the metric keys of the histories.
METRIC_LABELS = {
    "t1/eer": "EER, 1-image templates",
    "val/t1/eer": "EER, 1-image, validation images of the training identities",
    "t5/eer": "EER, 5-image templates",
    "t1/tar@far=0.01": "TAR at FAR = 1%, 1-image",
    "val/acc": "identification accuracy",
    "descriptor_size": "descriptor size",
    "filters_removed_pct": "filters removed (%)",
    "params_removed_pct": "parameters removed (%)",
    "step": "pruning step",
    "params": "parameters (millions)",
    "macs": "MACs per image (millions)",
}
#: Display names of the networks (the keys of ``facepruning.models.ARCHITECTURES``), declared
#: once: the README generator and the benchmark report read them from here.
NETWORK_LABELS = {"squeezenet": "SqueezeNet", "mobilenet_v2": "MobileNetV2", "resnet50": "ResNet50"}
#: Readable names of the keys that networks and stages are stored under (and the metric keys of
#: :data:`METRIC_LABELS`); :func:`label` reads them. Criteria and runs are named by the caller.
LABELS = {
    **NETWORK_LABELS,
    "original": "original network",
    "pruned": "pruned",
    "finetuned": "pruned + fine-tuned",
    "final": "final fine-tuning",
    **METRIC_LABELS,
}


def apply_theme() -> None:
    """The figures' look: seaborn's white grid, the :data:`OKABE_ITO` colour cycle, 9-point
    legends and ticks (sets matplotlib's global settings; the same on every call)."""
    import seaborn as sns

    sns.set_theme(
        context="notebook",
        style="whitegrid",
        palette=OKABE_ITO,
        rc={"legend.fontsize": 9, "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.titlesize": 11},
    )


def label(*keys, labels: Mapping[str, str] | None = None) -> str:
    """Readable text for stored keys, joined by ", ": a network (``"resnet50"`` -> "ResNet50"), a
    stage, a metric, or a run name ``<network>-<rest>`` (``"resnet50-x"`` -> "ResNet50, x").

    ``labels`` maps further keys to their text and is read first, e.g. the display labels of
    criteria or runs (``{"taylor_activation": "Taylor (activations)"}`` turns
    ``"squeezenet-taylor_activation"`` into "SqueezeNet, Taylor (activations)"). Anything else,
    readable text included, comes back unchanged, so labelling twice does no harm."""
    return ", ".join(_label(str(key), labels or {}) for key in keys)


def _label(key: str, labels: Mapping[str, str]) -> str:
    if key in labels:
        return labels[key]
    if key in LABELS:
        return LABELS[key]
    arch, rest = _parts(key)
    if arch is not None and rest:
        return f"{NETWORK_LABELS[arch]}, {_label(rest, labels)}"
    return key


#: The colour of each network and each criterion, the same in every figure: a figure of several
#: networks colours by network, a figure of one network's runs by criterion.
COLOR_OF = {
    "squeezenet": OKABE_ITO[0],
    "mobilenet_v2": OKABE_ITO[1],
    "resnet50": OKABE_ITO[2],
    "taylor_activation": OKABE_ITO[3],
    "taylor_weight": OKABE_ITO[4],
    "l1_norm": OKABE_ITO[5],
    "random": "#999999",
    "taylor_activation_unnormalized": "#000000",
    "taylor_activation (unnormalized)": "#000000",  # the same run, by its variant key
    "control": REFERENCE,
}


def _parts(key) -> tuple[str | None, str | None]:
    """(network, criterion) of a run name ``<arch>-<criterion>``, a network or a criterion."""
    text = str(key)
    arch, sep, rest = text.partition("-")
    if sep and arch in NETWORK_LABELS:
        return arch, rest
    return (text, None) if text in NETWORK_LABELS else (None, text)


def palette(keys: Sequence) -> dict:
    """A colour per key: networks and criteria (and runs, by the one of the two that differs
    among ``keys``) get their :data:`COLOR_OF` colour in every figure; other keys the Okabe-Ito
    colours left, in order."""
    parts = {k: _parts(k) for k in keys}
    archs = {a for a, _ in parts.values() if a is not None}
    by_arch = len(archs) > 1 or all(c is None for _, c in parts.values())
    fixed = {}
    for key, (arch, criterion) in parts.items():
        name = arch if by_arch or criterion is None else criterion
        if name in COLOR_OF:
            fixed[key] = COLOR_OF[name]
    spare = [c for c in OKABE_ITO if c not in fixed.values()] or OKABE_ITO
    others = [k for k in keys if k not in fixed]
    return {**fixed, **{k: spare[i % len(spare)] for i, k in enumerate(others)}}


#: Metadata that would make the same figure differ between saves, matplotlib versions or
#: machines (version strings, creation dates), blanked per format.
_REPRODUCIBLE_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> None:
    """Save ``fig`` atomically (the parent folder is created), byte for byte reproducibly.

    The format follows the suffix (``.pdf``, ``.svg``; PNG for anything else). Version strings
    and dates are left out of the file and SVG element ids come from a fixed salt, so the same
    figure always gives the same bytes (what DVC and git see as "unchanged").
    """
    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = suffix if suffix in _REPRODUCIBLE_METADATA else "png"
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "facepruning"}):
        fig.savefig(
            tmp,
            dpi=dpi,
            bbox_inches="tight",
            format=fmt,
            metadata=_REPRODUCIBLE_METADATA[fmt],
        )
