"""The prune stage (notebook 03, ``python -m facepruning prune``): a baseline pruned step by
step by one criterion; the pruned network, its history and its layer widths."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .. import artifacts, distributed, parameters
from ..errors import ModelError, ParameterError, PruningError
from ..kernels import kernel_settings
from ..models import load_model, save_model
from ..parameters import PruneParameters
from ..pruning import (
    IMPORTANCES,
    ImportanceAccumulator,
    PruningResult,
    channels_per_step,
    prune_iteratively,
)
from ..statistics import width_rank_correlation
from ..training import (
    epoch_batches,
    epoch_generator,
    recalibrate_batchnorm,
    train_epoch,
)
from .common import (
    StageData,
    claimed,
    data_fingerprint,
    data_identity,
    evaluate,
    fold_of,
    threshold_of,
    training_data,
)

#: the criterion of the no-pruning control: trained like a pruning run, nothing removed
CONTROL = "none"

__all__ = [
    "PruneStageRun",
    "run",
    "pruning_inputs",
    "split_pair_scores",
    "FaceTraining",
    "prune_faces",
    "run_identity",
    "variant_of",
    "display_label_of",
]


def pruning_inputs(
    baseline_path: str | Path, data_dir: str | Path, *, arch: str
) -> tuple[nn.Module, dict[str, Any], StageData]:
    """The baseline network (on the CPU, eval mode), its meta, and the data with the baseline's
    normalisation; raises ModelError when the file holds another architecture or was trained on
    other data (classes, image channels or size, or the prepared files themselves)."""
    model, meta = load_model(baseline_path)
    if meta.get("arch") != arch:
        raise ModelError(f"{baseline_path} holds a {meta.get('arch')}, not a {arch}")
    _check_baseline_fits(baseline_path, meta, data_dir)
    inputs = training_data(
        data_dir,
        pixel_mean=meta["pixel_mean"],
        pixel_std=meta["pixel_std"],
        random_crop=meta["random_crop"],
        hflip=meta["hflip"],
        image_size=meta["image_size"],
    )
    return model, meta, inputs


def _check_baseline_fits(baseline_path, meta: dict[str, Any], data_dir) -> None:
    """Stop with one line naming both files when the baseline was trained on other data."""
    from ..data import load_prepared

    data = load_prepared(data_dir)
    info = data.info
    fix = f"retrain the baseline on {data_dir} (dvc repro train@{meta.get('arch')})"
    checks = {
        "identities": (meta.get("num_classes"), data.num_classes),
        "image channels": (meta.get("channels"), info.get("channels")),
        "image size": (meta.get("image_size"), info.get("image_size")),
    }
    for what, (trained, here) in checks.items():
        if trained != here:
            raise ModelError(
                f"{baseline_path} was trained with {trained} {what}, {data_dir} has {here}: {fix}"
            )
    recorded = meta.get("data_fingerprint")
    if recorded is not None:
        current = data_fingerprint(data_dir, info)
        if recorded != current:
            raise ModelError(
                f"{baseline_path} was trained on other prepared data than {data_dir} holds now, "
                f"or by an older facepruning (data fingerprint {recorded}, now {current}): {fix}"
            )


@dataclass
class PruneStageRun:
    """What the prune stage did: the pruned network, its history and layer widths."""

    model: nn.Module
    result: PruningResult
    history: pd.DataFrame
    layers: pd.DataFrame
    width_rank_correlation: float
    summary: dict[str, Any]
    inputs: StageData
    params: PruneParameters
    meta: dict[str, Any]
    run_id: str


def _prune_summary(
    p: PruneParameters,
    history: pd.DataFrame,
    layers: pd.DataFrame,
    correlation: float,
    *,
    fold: int,
) -> dict:
    final, original = history.iloc[-1], history.iloc[0]
    control = p.criterion == CONTROL
    return {
        "run": p.run,
        # which training run this is: runs that differ only here are replicates (analysis)
        "fold": fold,
        "seed": p.seed,
        "arch": p.arch,
        "criterion": p.criterion,
        "normalize_scores": p.normalize_scores,
        # the run's variant as notebook 04 keys it, and as figures name it
        "label": variant_of(p.criterion, p.normalize_scores),
        "display_label": display_label_of(p.criterion, p.normalize_scores),
        "scores_normalised": p.normalize_scores
        and not control
        and IMPORTANCES[p.criterion].normalizable,
        # what a random-removal null of the width claim must respect (analysis.width_null)
        "min_channels": p.min_channels,
        "channel_multiple": p.channel_multiple,
        "channels_per_step": 0
        if control
        else channels_per_step(p.filters_per_step, int(layers.iloc[:, 0].sum())),
        "steps": int(history.step.max()),
        "descriptor_size_original": int(original.descriptor_size),
        "descriptor_size_final": int(final.descriptor_size),
        "filters_removed_pct": float(final.filters_removed_pct),
        "params_original": int(original.params),
        "params_final": int(final.params),
        "macs_original": int(original.macs),
        "macs_final": int(final.macs),
        "width_rank_correlation": correlation,
        "original": {k: original[k] for k in history.columns if "/" in k},
        "final": {k: final[k] for k in history.columns if "/" in k},
    }


def split_pair_scores(history: list[dict[str, Any]]) -> tuple[list[dict], dict[str, Any]]:
    """History rows without their pair scores, and the scores of every row in one dict.

    The dict is what ``scores_path`` holds, for the identity bootstrap of notebook 04:
    ``identities`` (the test identities the pair codes index), ``rows`` (step and stage of each
    history row), ``pairs`` (per template size, the identity codes ``a``, ``b`` and ``genuine`` of
    every pair, the same for every row) and ``scores`` (per template size, ``[rows, pairs]``).
    """
    rows, per_row = [], []
    for row in history:
        row = dict(row)
        per_row.append(row.pop("pair_scores", None))
        identities = row.pop("test_identities", None)
        rows.append(row)
    if not rows or any(scores is None for scores in per_row):
        return rows, {}
    first = per_row[0]
    return rows, {
        "identities": identities,
        "rows": [{"step": int(r["step"]), "stage": r["stage"]} for r in rows],
        "pairs": {k: {c: first[k][c] for c in ("a", "b", "genuine")} for k in first},
        "scores": {k: torch.stack([scores[k]["scores"] for scores in per_row]) for k in first},
    }


def _repeat_steps(p: PruneParameters) -> PruneParameters:
    """With ``steps_of``: exactly as many steps as that run took, and no target.

    The no-pruning control is trained, scored and fine-tuned step for step like its network's
    pruning run, so that its rows (the final one included) pair with the pruning run's.
    """
    if not p.steps_of:
        return p
    source = Path(p.steps_of)
    if not source.is_file():
        raise ParameterError(
            f"steps_of={p.steps_of!r}: no such file; run the pruning run it names first "
            "(dvc repro runs it before the control)"
        )
    steps = artifacts.read_json(source).get("steps")
    if not isinstance(steps, int) or steps < 1:
        raise ParameterError(
            f"steps_of={p.steps_of!r} holds no positive 'steps' count: it is not a pruning "
            "run's metrics JSON; rerun that run"
        )
    return replace(p, max_steps=steps, target_fraction=None)


def variant_of(criterion: str, normalize_scores: bool) -> str:
    """The run's variant key: ``criterion``, plus " (unnormalized)" for a ranking criterion run
    without layer-wise normalisation (keys and names in code say "normalize", prose
    "normalise")."""
    _check_criterion(criterion)
    unscaled = criterion != CONTROL and IMPORTANCES[criterion].normalizable
    return f"{criterion} (unnormalized)" if unscaled and not normalize_scores else criterion


def display_label_of(criterion: str, normalize_scores: bool) -> str:
    """What figures call the run's variant: the criterion's label (", unnormalised" added)."""
    _check_criterion(criterion)
    if criterion == CONTROL:
        return "control (nothing removed)"
    label = IMPORTANCES[criterion].label
    unscaled = IMPORTANCES[criterion].normalizable and not normalize_scores
    return f"{label}, unnormalised" if unscaled else label


def _check_criterion(criterion: str) -> None:
    if criterion != CONTROL and criterion not in IMPORTANCES:
        raise ParameterError(
            f"criterion={criterion!r}: choose one of {sorted(IMPORTANCES)}, or {CONTROL!r} for "
            "the no-pruning control"
        )


def _sgd(model: nn.Module, lr: float, p: PruneParameters) -> torch.optim.Optimizer:
    # A fresh optimiser each time: channel removal replaces the parameter tensors.
    return torch.optim.SGD(
        model.parameters(), lr=lr, momentum=p.momentum, weight_decay=p.weight_decay
    )


@dataclass
class FaceTraining:
    """How the face pipeline trains inside the generic loop: data-parallel SGD on batches of
    ``train_set`` augmented by ``transform(images, generator)``, in an order that depends only on
    (seed, step), so a resumed run repeats an uninterrupted one. Dropout draws from torch's global
    generator, so each pass seeds it from (seed, step, rank) first."""

    train_set: Any
    transform: Callable
    p: PruneParameters

    def _batches(self, key: int):
        return epoch_batches(
            self.train_set,
            batch_size=self.p.batch_size,
            seed=self.p.seed,
            epoch=key * 1000,
            num_workers=self.p.num_workers,
        )

    def _channels_last(self, model: nn.Module) -> None:
        if self.p.channels_last:  # new parameter tensors come back contiguous after a removal
            model.to(memory_format=torch.channels_last)

    def score_pass(self, model: nn.Module, accumulator: ImportanceAccumulator, step: int) -> None:
        """``score_batches`` mini-batches, with SGD updates when ``train_during_scoring``."""
        p = self.p
        self._channels_last(model)
        optimizer = _sgd(model, p.lr, p) if p.train_during_scoring else None
        batches = self._batches(step)
        torch.manual_seed(p.seed * 7919 + step + distributed.info().rank * 104_729)
        with distributed.data_parallel(model) as net:
            train_epoch(
                net,
                itertools.islice(batches, p.score_batches),
                optimizer,
                self.transform,
                generator=epoch_generator(p.seed, step, 1),
                channels_last=p.channels_last,
                after_backward=accumulator.after_backward,
                before_backward=accumulator.set_grad_scale,
            )

    def after_removal(self, model: nn.Module, step: int) -> None:
        """Re-estimate the BatchNorm statistics, which described the larger network."""
        self._channels_last(model)
        if not self.p.bn_recalibration_batches:
            return
        with distributed.data_parallel(model) as net:
            recalibrate_batchnorm(
                net,
                itertools.islice(self._batches(step), self.p.bn_recalibration_batches),
                self.transform,
                generator=epoch_generator(self.p.seed, step, 3),
                channels_last=self.p.channels_last,
            )

    def finetune(self, model: nn.Module, key: int, epochs: int | None = None) -> None:
        """``finetune_epochs`` (or ``epochs``) of SGD at ``finetune_lr``."""
        p = self.p
        self._channels_last(model)  # a resumed network comes back in the default layout
        epochs = p.finetune_epochs if epochs is None else epochs
        optimizer = _sgd(model, p.finetune_lr, p)
        batches = self._batches(key)
        per_epoch = math.ceil(len(self.train_set) / p.batch_size)
        rank = distributed.info().rank
        with distributed.data_parallel(model) as net:
            for epoch in range(epochs):
                torch.manual_seed(p.seed * 7919 + key * 1000 + epoch + rank * 104_729)
                train_epoch(
                    net,
                    itertools.islice(batches, per_epoch),
                    optimizer,
                    self.transform,
                    generator=epoch_generator(p.seed, key * 1000 + epoch, 1),
                    channels_last=p.channels_last,
                )

    def final_finetune(self, model: nn.Module) -> None:
        self.finetune(model, 10_000, epochs=self.p.final_finetune_epochs)


def prune_faces(
    model: nn.Module,
    example_inputs: torch.Tensor,
    training: FaceTraining,
    *,
    evaluate: Callable[[nn.Module], dict] | None = None,
    run_identity: dict[str, Any] | None = None,
    ignored: list[nn.Module] | None = None,
    progress: bool = True,
) -> PruningResult:
    """The generic loop (:func:`~facepruning.pruning.prune_iteratively`) driven by the prune
    parameters and the face pipeline's training. The no-pruning control (criterion ``none``)
    scores by a data-free criterion (no hooks) and removes nothing."""
    try:
        return _prune_iteratively(
            model, example_inputs, training, evaluate, run_identity, ignored, progress
        )
    except PruningError as e:  # the engine names its own arguments: say which parameters they are
        if "steps" not in str(e) and "step_fraction" not in str(e):
            raise
        raise PruningError(
            f"{e} (in the prune parameters steps is max_steps and step_fraction is "
            "filters_per_step)"
        ) from None


def _prune_iteratively(model, example_inputs, training, evaluate, run_identity, ignored, progress):
    p = training.p
    control = p.criterion == CONTROL
    return prune_iteratively(
        model,
        example_inputs,
        importance="l1_norm" if control else p.criterion,
        steps=p.max_steps,
        step_fraction=0 if control else p.filters_per_step,
        target_fraction=p.target_fraction,
        score_pass=training.score_pass,
        after_removal=training.after_removal,
        finetune=training.finetune if p.finetune_epochs else None,
        final_finetune=training.final_finetune if p.final_finetune_epochs else None,
        evaluate=evaluate,
        normalize=p.normalize_scores,
        min_channels=p.min_channels,
        channel_multiple=p.channel_multiple,
        ignored=ignored,
        checkpoint_dir=p.checkpoint_dir or None,
        run_identity=run_identity,
        seed=p.seed,
        progress=progress,
    )


def run_identity(p: PruneParameters, meta: dict[str, Any], inputs: StageData) -> dict[str, Any]:
    """Everything a pruning run's result depends on: its parameters, the data (description and
    content), the baseline's weights, the package's code and the kernels it computes with."""
    return {
        **parameters.run_identity(p),
        "baseline": meta["run_fingerprint"],
        "baseline_file": artifacts.files_fingerprint(
            [p.baseline_path], root=Path(p.baseline_path).parent
        ),  # its bytes, not how its path is written
        "data": data_identity(inputs.data.info),
        "data_files": data_fingerprint(p.data_dir, inputs.data.info),
        "code": artifacts.code_fingerprint(),
        "kernels": kernel_settings(),
    }


def run(params: PruneParameters | None = None, /, **given: Any) -> PruneStageRun:
    """Prune a baseline iteratively; write the pruned model, metrics, history and layers.

    Parameters: :class:`~facepruning.parameters.PruneParameters`, as a dataclass or by name.
    Returns a :class:`PruneStageRun`.
    """
    p = _repeat_steps(parameters.resolve("prune", params, given))
    _check_criterion(p.criterion)
    outputs = [p.model_path, p.metrics_path, p.history_path, p.layers_path, p.scores_path]
    with claimed(outputs, p.checkpoint_dir):
        return _run(p)


def _run(p: PruneParameters) -> PruneStageRun:
    here = distributed.init_from_env()
    model, meta, inputs = pruning_inputs(p.baseline_path, p.data_dir, arch=p.arch)
    device = distributed.default_device()
    model.to(device)
    identity = run_identity(p, meta, inputs)

    def measure(net):
        if not here.is_main:  # only rank 0 records metrics
            return {}
        return evaluate(net, inputs, with_pair_scores=True)

    result = prune_faces(
        model,
        torch.zeros(1, 3, inputs.image_size, inputs.image_size, device=device),
        FaceTraining(inputs.train_set, inputs.train_transform, p),
        evaluate=measure,
        run_identity=identity,
    )
    rows, pair_scores = split_pair_scores(result.history)
    history = pd.DataFrame(rows)
    layers = pd.DataFrame({row["step"]: row["sizes"] for row in result.layers})
    correlation = width_rank_correlation(layers.iloc[:, 0], layers.iloc[:, -1])
    summary: dict[str, Any] = {}
    if here.is_main:
        summary = _prune_summary(p, history, layers, correlation, fold=fold_of(inputs.data.info))
        artifacts.save_torch(p.scores_path, pair_scores)
        pruned_meta = {
            **meta,
            "criterion": p.criterion,
            "channel_multiple": p.channel_multiple,
            "filters_removed_pct": summary["filters_removed_pct"],
            "eer_threshold": _final_eer_threshold(pair_scores),
        }
        save_model(p.model_path, result.model, meta=pruned_meta)
        artifacts.write_json(p.metrics_path, summary)
        artifacts.write_csv(p.history_path, history, index=False)
        artifacts.write_csv(p.layers_path, layers.rename_axis("group"))
    distributed.barrier()
    run_id = artifacts.fingerprint(identity)
    return PruneStageRun(
        result.model, result, history, layers, correlation, summary, inputs, p, meta, run_id
    )


def _final_eer_threshold(pair_scores: dict[str, Any]) -> float | None:
    """The 1-image EER threshold of the final network (the last row of the pair scores, read as
    :func:`~facepruning.stages.common.threshold_of` reads ``evaluate``'s); None without 1-image
    pairs of both kinds."""
    if "t1" not in pair_scores.get("scores", {}):
        return None
    last = {"scores": pair_scores["scores"]["t1"][-1], **pair_scores["pairs"]["t1"]}
    return threshold_of({"pair_scores": {"t1": last}})
