"""Every stage's parameters, declared once: name, type, default and meaning.

Each pipeline stage (``prepare``, ``train``, ``prune``, ``analysis``) has one dataclass here. A
field's annotation is its type, its default is the notebook's default (small values that run in
CI; params.yaml holds the pipeline's), and its metadata holds a one-line meaning and whether the
value changes the result (``identity``: paths and ``num_workers`` do not, so they stay out of the
checkpoint fingerprints). Everything else derives from these classes:

- :func:`parse` validates a mapping (from params.yaml, ``--set`` or a notebook) and returns the
  dataclass: unknown names and wrong types are refused with one line naming the parameter, the
  value and what is expected;
- :func:`notebook_cell` is the source of each notebook's ``parameters`` cell (annotated, so
  ``papermill --help-notebook`` shows types and meanings; a test keeps the notebooks equal to it);
- :func:`from_notebook` checks a notebook's namespace after papermill injected its values, so a
  misspelt ``-p`` name fails instead of being ignored;
- :func:`describe` is the CLI's help; :func:`run_identity` what fingerprints a run.

The module imports neither torch nor the data code, so the command line validates before any of
them loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ParameterError

__all__ = [
    "ARCHITECTURES",
    "PrepareParameters",
    "TrainParameters",
    "PruneParameters",
    "AnalysisParameters",
    "STAGES",
    "declared",
    "parse",
    "resolve",
    "run_identity",
    "describe",
    "command_line_paths",
    "notebook_cell",
    "from_notebook",
]

Architecture = Literal["squeezenet", "mobilenet_v2", "resnet50"]
ARCHITECTURES: tuple[str, ...] = typing.get_args(Architecture)


def param(default: Any, meaning: str, *, identity: bool = True) -> Any:
    """A declared parameter: its default, a one-line meaning, and whether it changes results."""
    if isinstance(default, list):
        return field(
            default_factory=lambda: list(default),
            metadata={"meaning": meaning, "identity": identity},
        )
    return field(default=default, metadata={"meaning": meaning, "identity": identity})


def path(default: str, meaning: str) -> Any:
    """A file or folder parameter: never part of a run's identity."""
    return param(default, meaning, identity=False)


def _at_least(values: Mapping[str, Any], minimum: float) -> None:
    for name, value in values.items():
        if value < minimum:
            raise ParameterError(f"{name}={value!r}: must be at least {minimum}")


def _check_finite(params: Any) -> None:
    """Every number is finite (NaN and infinity pass every comparison check and fail later)."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ParameterError(f"{f.name}={value!r}: give a finite number")


def _check_training(params: Any) -> None:
    """The SGD and loader settings both training and pruning use, in their ranges."""
    _check_finite(params)
    if not 0 <= params.momentum < 1:
        raise ParameterError(f"momentum={params.momentum!r}: must lie in [0, 1), e.g. 0.9")
    _at_least({"weight_decay": params.weight_decay, "num_workers": params.num_workers}, 0)
    _at_least({"seed": params.seed}, 0)  # numpy's generators refuse negative seeds


def _check_choices(params: Any) -> None:
    """Fields declared as a ``Literal`` hold one of its values (also when built directly)."""
    hints = typing.get_type_hints(type(params))
    for f in dataclasses.fields(params):
        hint = hints[f.name]
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        value = getattr(params, f.name)
        if choices and value not in choices:
            raise ParameterError(
                f"{f.name}={value!r} is not one of {', '.join(choices)}; "
                f"give e.g. {f.name}={choices[0]!r}"
            )


@dataclass
class PrepareParameters:
    """Notebook 01: copy or scan the images, split identities, crop and cache the faces."""

    dataset: Literal["orl", "folder", "lfw", "vggface2"] = param(
        "orl", "orl (embedded), folder (one sub-folder per identity), lfw or vggface2"
    )
    data_root: str = path("", "folder with one sub-folder per identity (ignored for orl)")
    raw_dir: str = path("build/nbval/data/raw", "where the ORL faces are copied")
    out_dir: str = path("build/nbval/data/processed", "where the prepared data is written")
    figures_dir: str = path("build/nbval/figures/01_data_preparation", "where figures go")
    protocol_file: str = path("", "lfw: pairs.txt; vggface2: test_posetemp_imglist.txt")
    bbox_file: str = path("", "vggface2: loose_bb_*.csv")
    seed: int = param(0, "seed of the identity split")
    test_identities: int = param(10, "identities held out for open-set verification")
    fold: int = param(0, "which disjoint group of test_identities to hold out (0: the first)")
    val_per_identity: int = param(2, "images per training identity kept for validation")
    min_images_per_identity: int = param(4, "identities with fewer images are left out")
    resize: int = param(73, "shortest side of the cached images (paper: 129)")
    image_size: int = param(64, "crop fed to the network (paper: 113)")
    bbox_enlarge: float = param(0.3, "vggface2: enlarge the loose face box by this share")
    cache: bool = param(True, "decode, crop and cache every image once (images.pt)")
    on_error: Literal["raise", "skip"] = param(
        "raise", "unreadable image: raise, or skip it (listed in dataset.json)"
    )

    def __post_init__(self):
        _check_choices(self)
        _check_finite(self)
        _at_least({"resize": self.resize, "image_size": self.image_size}, 8)
        _at_least({"test_identities": self.test_identities}, 2)
        _at_least({"min_images_per_identity": self.min_images_per_identity}, 2)
        _at_least({"val_per_identity": self.val_per_identity}, 0)
        _at_least({"seed": self.seed, "fold": self.fold, "bbox_enlarge": self.bbox_enlarge}, 0)
        if self.image_size > self.resize:
            raise ParameterError(
                f"image_size={self.image_size} is larger than resize={self.resize}: the crop must "
                "fit in the cached image; lower image_size or raise resize"
            )


@dataclass
class _Training:
    """What identification training and pruning's fine-tuning share."""

    batch_size: int = param(32, "images per mini-batch")
    momentum: float = param(0.9, "SGD momentum")
    weight_decay: float = param(0.0005, "SGD weight decay")
    seed: int = param(0, "seed of initial weights, shuffling and augmentation")
    channels_last: bool = param(True, "channels_last memory format (30-40% faster on CPUs)")
    num_workers: int = param(0, "DataLoader workers (streaming data sets)", identity=False)


@dataclass
class TrainParameters(_Training):
    """Notebook 02: train a backbone for identification with the papers' plateau schedule."""

    arch: Architecture = param("squeezenet", "squeezenet | mobilenet_v2 | resnet50")
    data_dir: str = path("build/nbval/data/processed", "prepared data (notebook 01)")
    model_path: str = path("build/nbval/models/squeezenet/baseline.pt", "trained network")
    metrics_path: str = path("build/nbval/metrics/train/squeezenet.json", "summary metrics")
    history_path: str = path("build/nbval/metrics/train/squeezenet_history.csv", "per epoch")
    figures_dir: str = path("build/nbval/figures/02_baseline_training/squeezenet", "figures")
    checkpoint_dir: str = path("build/nbval/checkpoints/train/squeezenet", "resume state")
    epochs: int = param(3, "most epochs; training stops earlier once the schedule ends")
    lr_levels: list[float] = param(
        [0.01, 0.005, 0.001, 0.0001], "plateau schedule: learning rates, in order"
    )
    patience: int = param(3, "epochs without validation improvement before the next level")
    random_crop: bool = param(True, "random crops for training (centre crop otherwise)")
    hflip: bool = param(True, "random horizontal flips for training")
    pixel_mean: list[float] | float | None = param(
        None, "0..255 per channel; None: from the training images"
    )
    pixel_std: list[float] | float | None = param(None, "None: from the training images")
    weights: str | None = param(None, "None (from scratch) or a local torchvision weights file")

    def __post_init__(self):
        _check_choices(self)
        _check_training(self)
        _at_least({"epochs": self.epochs, "batch_size": self.batch_size}, 1)
        _at_least({"patience": self.patience}, 1)
        if not self.lr_levels or min(self.lr_levels) <= 0:
            raise ParameterError(
                f"lr_levels={self.lr_levels!r}: give one or more positive learning rates"
            )
        std = self.pixel_std if isinstance(self.pixel_std, list) else [self.pixel_std]
        if self.pixel_std is not None and (not std or min(std) <= 0):
            raise ParameterError(
                f"pixel_std={self.pixel_std!r}: give positive numbers (one, or one per channel), "
                "or null for the training images' own"
            )


@dataclass
class PruneParameters(_Training):
    """Notebook 03: prune a baseline iteratively by a filter-importance criterion."""

    run: str = param(
        "squeezenet-taylor_activation", "the run's name in metrics and reports", identity=False
    )
    arch: Architecture = param("squeezenet", "the baseline's architecture")
    criterion: str = param(
        "taylor_activation",
        "registered importance name, or none (the control)",
    )
    data_dir: str = path("build/nbval/data/processed", "prepared data (notebook 01)")
    baseline_path: str = path("build/nbval/models/squeezenet/baseline.pt", "network to prune")
    model_path: str = path("build/nbval/models/pruned/squeezenet-taylor_activation.pt", "pruned")
    metrics_path: str = path(
        "build/nbval/metrics/prune/squeezenet-taylor_activation.json", "summary metrics"
    )
    history_path: str = path(
        "build/nbval/metrics/prune/squeezenet-taylor_activation_history.csv", "per step"
    )
    layers_path: str = path(
        "build/nbval/metrics/prune/squeezenet-taylor_activation_layers.csv", "widths"
    )
    scores_path: str = path(
        "build/nbval/scores/squeezenet-taylor_activation.pt", "pair scores of every row"
    )
    figures_dir: str = path(
        "build/nbval/figures/03_taylor_pruning/squeezenet-taylor_activation", "figures"
    )
    checkpoint_dir: str = path(
        "build/nbval/checkpoints/prune/squeezenet-taylor_activation", "resume state"
    )
    steps_of: str = path(
        "", "a pruning run's metrics JSON: repeat its steps, no target (the control)"
    )
    filters_per_step: float = param(
        0.05, "channels per step: a count, or a share (< 1) of the prunable ones"
    )
    max_steps: int = param(3, "most pruning steps")
    target_fraction: float | None = param(
        None, "stop once this share of the prunable filters is gone"
    )
    score_batches: int = param(2, "mini-batches scored per step")
    train_during_scoring: bool = param(True, "SGD updates between scored mini-batches")
    lr: float = param(0.001, "learning rate while scoring")
    finetune_epochs: int = param(1, "epochs of fine-tuning for each step's snapshot")
    finetune_lr: float = param(0.001, "learning rate of fine-tuning")
    final_finetune_epochs: int = param(1, "epochs of fine-tuning after the last step")
    normalize_scores: bool = param(
        True, "Molchanov (2017): divide each layer's scores by their L2 norm"
    )
    bn_recalibration_batches: int = param(2, "batches to re-estimate BatchNorm after a removal")
    min_channels: int = param(1, "channels every layer keeps")
    channel_multiple: int = param(1, "layers a step prunes land on multiples of this (SIMD)")

    def __post_init__(self):
        _check_choices(self)
        _check_training(self)
        for name in ("lr", "finetune_lr"):
            if not getattr(self, name) > 0:
                raise ParameterError(f"{name}={getattr(self, name)!r}: give a positive rate")
        if not self.filters_per_step > 0 or (
            self.filters_per_step >= 1 and self.filters_per_step != int(self.filters_per_step)
        ):
            raise ParameterError(
                f"filters_per_step={self.filters_per_step!r}: give a whole count (e.g. 8) or a "
                "share of the prunable channels in (0, 1) (e.g. 0.04)"
            )
        if self.target_fraction is not None and not 0 < self.target_fraction < 1:
            raise ParameterError(
                f"target_fraction={self.target_fraction!r}: the share of prunable filters to "
                "remove must lie in (0, 1), or be null for no target"
            )
        _at_least(
            {
                "max_steps": self.max_steps,
                "score_batches": self.score_batches,
                "min_channels": self.min_channels,
                "batch_size": self.batch_size,
            },
            1,
        )
        _at_least({"channel_multiple": self.channel_multiple}, 1)
        _at_least(
            {
                "finetune_epochs": self.finetune_epochs,
                "final_finetune_epochs": self.final_finetune_epochs,
                "bn_recalibration_batches": self.bn_recalibration_batches,
            },
            0,
        )


@dataclass
class AnalysisParameters:
    """Notebook 04: the runs compared, the papers' claims judged."""

    train_dir: str = path("build/nbval/metrics/train", "training metrics (notebook 02)")
    prune_dir: str = path("build/nbval/metrics/prune", "pruning metrics (notebook 03)")
    scores_dir: str = path("build/nbval/scores", "pair scores of the pruning runs (notebook 03)")
    replicate_dir: str = path("", "metrics of the replicate runs (other folds, seeds); '': none")
    replicate_scores_dir: str = path("", "pair scores of the replicate runs")
    metrics_path: str = path("build/nbval/metrics/analysis.json", "the analysis' summary")
    figures_dir: str = path("build/nbval/figures/04_analysis", "figures")
    eer_tolerance: float = param(0.02, "largest EER rise counted as no appreciable loss")
    template_sizes: list[int] = param([1, 5], "images per verification template")

    def __post_init__(self):
        if not 0 < self.eer_tolerance < 1:
            raise ParameterError(f"eer_tolerance={self.eer_tolerance!r}: must lie in (0, 1)")
        _at_least({f"template_sizes[{i}]": k for i, k in enumerate(self.template_sizes)}, 1)


STAGES: dict[str, type] = {
    "prepare": PrepareParameters,
    "train": TrainParameters,
    "prune": PruneParameters,
    "analysis": AnalysisParameters,
}


# -- types ------------------------------------------------------------------------------------
_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a text"}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def declared(cls: type) -> list[dataclasses.Field]:
    """The class's fields in reading order: its own first, then the shared training ones."""
    own = cls.__dict__.get("__annotations__", {})
    fields = dataclasses.fields(cls)
    return [f for f in fields if f.name in own] + [f for f in fields if f.name not in own]


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` asks, or raise TypeError; ints are accepted where floats are."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value in args:
            return value
        raise TypeError
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except TypeError:
                continue
        raise TypeError
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError
        return [_coerce(v, args[0]) for v in value]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise TypeError


def _expected(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    return _TYPE_WORDS.get(hint, _type_name(hint))


def parse(stage: str, given: Mapping[str, Any]):
    """The stage's parameter dataclass from ``given`` (missing names take their defaults).

    Raises :class:`~facepruning.errors.ParameterError` with one line for an unknown name (with
    the closest declared one), a value of the wrong type, or a value out of range.
    """
    if stage not in STAGES:
        raise ParameterError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
    cls = STAGES[stage]
    hints = _hints(cls)
    names = [f.name for f in declared(cls)]
    values = {}
    for name, value in given.items():
        if name not in hints:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ParameterError(
                f"the {stage} stage has no parameter {name!r}: {hint}it accepts {', '.join(names)}"
            )
        try:
            values[name] = _coerce(value, hints[name])
        except TypeError:
            raise ParameterError(
                f"{stage} parameter {name}={value!r} is not {_expected(hints[name])}; "
                f"give e.g. {name}={_source(_default(cls, name))}"
            ) from None
    return cls(**values)


def resolve(stage: str, params: Any = None, given: Mapping[str, Any] | None = None) -> Any:
    """A stage's validated parameters: ``params`` (its dataclass, or None for the defaults)
    with ``given`` names and values applied and checked."""
    if params is None:
        return parse(stage, given or {})
    if given:
        return parse(stage, {**dataclasses.asdict(params), **given})
    return params


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def run_identity(params: Any) -> dict[str, Any]:
    """The parameters that change a run's result (no paths, no worker counts)."""
    return {
        f.name: getattr(params, f.name)
        for f in dataclasses.fields(params)
        if f.metadata.get("identity", True)
    }


def describe(stage: str, defaults: Mapping[str, Any] | None = None) -> str:
    """One line per parameter: name, type, default, meaning (the CLI's help). ``defaults``: the
    values a run uses where it is not told otherwise, shown in place of the declaration's."""
    cls = STAGES[stage]
    hints = _hints(cls)
    defaults = defaults or {}
    lines = []
    for f in declared(cls):
        default = defaults.get(f.name, _default(cls, f.name))
        lines.append(
            f"  {f.name} ({_type_name(hints[f.name])}, default {default!r}): "
            f"{f.metadata['meaning']}"
        )
    return "\n".join(lines)


#: Where the declared (notebook and test-suite) defaults write: under this folder.
TEST_ROOT = "build/nbval/"


def command_line_paths(stage: str, given: Mapping[str, Any]) -> dict[str, str]:
    """The path parameters that ``given`` leaves out, as the command line fills them in: where
    the pipeline writes (the declared default without :data:`TEST_ROOT`), named after the run's
    own ``arch`` and, for pruning, ``run`` (by default ``<arch>-<criterion>``). Also ``run``
    itself when pruning without one.

    >>> command_line_paths("prepare", {})["out_dir"]
    'data/processed'
    >>> command_line_paths("prune", {"arch": "resnet50"})["model_path"]
    'models/pruned/resnet50-taylor_activation.pt'
    """
    cls = STAGES[stage]
    names = {f.name for f in declared(cls)}
    filled: dict[str, str] = {}
    swaps: list[tuple[str, str]] = []  # (declared default name, this run's name), longest first
    if "run" in names:
        criterion = given.get("criterion", _default(cls, "criterion"))
        arch = given.get("arch", _default(cls, "arch"))
        run = given.get("run", f"{arch}-{criterion}")
        filled["run"] = run
        swaps.append((_default(cls, "run"), run))
    if "arch" in names:
        swaps.append((_default(cls, "arch"), given.get("arch", _default(cls, "arch"))))
    for name in names - set(given):
        default = _default(cls, name)
        if not (isinstance(default, str) and default.startswith(TEST_ROOT)):
            continue
        value = default[len(TEST_ROOT) :]
        marks = [(old, f"\0{k}\0", new) for k, (old, new) in enumerate(swaps)]
        for old, mark, _ in marks:  # marks first: a run's name may contain an arch's
            value = value.replace(old, mark)
        for _, mark, new in marks:
            value = value.replace(mark, new)
        filled[name] = value
    return {k: v for k, v in filled.items() if k not in given}


def notebook_cell(stage: str, values: Mapping[str, Any] | None = None) -> str:
    """The source of the stage notebook's ``parameters`` cell: ``name: type = default  # meaning``
    (``name = default  # type: a|b meaning`` for unions, the form papermill parses).

    Derived from the declaration; a test keeps every notebook's cell equal to it. With
    ``values`` (a run's parameters, e.g. ``dataclasses.asdict(parse(stage, given))``) the cell
    shows them in place of the defaults: what an executed report shows of its run.
    """
    cls = STAGES[stage]
    hints = _hints(cls)
    values = values or {}
    lines = []
    for f in declared(cls):
        value = values.get(f.name, _default(cls, f.name))
        annotation, value = _annotation(hints[f.name]), _source(value)
        meaning = f.metadata["meaning"]
        if "|" in annotation:  # papermill reads unions from a type comment, not an annotation
            lines.append(f"{f.name} = {value}  # type: {annotation.replace(' ', '')} {meaning}")
        else:
            lines.append(f"{f.name}: {annotation} = {value}  # {meaning}")
    return "\n".join(lines)


def _source(value: Any) -> str:
    """``value`` as Python source in ruff's style (double-quoted strings)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_source, value)) + "]"
    return repr(value)


def _annotation(hint: Any) -> str:
    """A plain annotation papermill understands (``Literal`` choices become their type)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return type(args[0]).__name__
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _annotation(a) for a in args)
    if origin is list:
        return f"list[{_annotation(args[0])}]"
    return hint.__name__


# Names IPython defines in every kernel; anything else at the top of a notebook is a parameter.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def from_notebook(stage: str, namespace: Mapping[str, Any]):
    """The stage's parameters from a notebook's globals, right after its ``parameters`` cell.

    Papermill injects ``-p`` values as plain assignments after that cell; a name the stage does
    not declare (a typo) is refused here instead of being silently ignored.
    """
    cls = STAGES[stage]
    names = {f.name for f in dataclasses.fields(cls)}
    given = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _KERNEL_NAMES:
            continue
        if isinstance(value, types.ModuleType) or callable(value):
            continue
        given[name] = value
    unknown = sorted(set(given) - names)
    if unknown:
        # parse() names the first unknown one with the closest declared name
        parse(stage, {unknown[0]: given[unknown[0]]})
    return parse(stage, {name: given[name] for name in names if name in given})
