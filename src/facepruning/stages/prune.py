"""The prune stage (notebook 03, ``python -m facepruning prune``): a baseline pruned step by
step by one criterion; the pruned network, its history and its layer widths."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from .. import artifacts, distributed, parameters
from ..errors import ModelError, ParameterError
from ..parameters import PruneParameters
from ..pruning import PruningResult, load_model, prune_iteratively, save_model
from ..verification import eer_threshold
from .common import StageData, checkpoints, data_identity, evaluate, training_data

__all__ = ["PruneRun", "run", "pruning_inputs", "split_pair_scores"]


def pruning_inputs(
    baseline_path: str | Path, data_dir: str | Path, *, arch: str
) -> tuple[nn.Module, dict[str, Any], StageData]:
    """The baseline network (on the CPU, eval mode), its meta, and the data with the baseline's
    normalisation; raises ModelError when the file holds another architecture."""
    model, meta = load_model(baseline_path)
    if meta.get("arch") != arch:
        raise ModelError(f"{baseline_path} holds a {meta.get('arch')}, not a {arch}")
    inputs = training_data(
        data_dir,
        pixel_mean=meta["pixel_mean"],
        pixel_std=meta["pixel_std"],
        random_crop=meta["random_crop"],
        hflip=meta["hflip"],
        image_size=meta["image_size"],
    )
    return model, meta, inputs


@dataclass
class PruneRun:
    """What :func:`prune_stage` did: the pruned network, its history and layer widths."""

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


def _width_rank_correlation(layers: pd.DataFrame) -> float:
    """Spearman correlation of a group's original width and the share of it removed; NaN when
    every group lost the same share (or all groups are equally wide)."""
    width = layers.iloc[:, 0]
    removed_share = 1 - layers.iloc[:, -1] / width
    if not (removed_share.std() > 0 and width.std() > 0):
        return float("nan")
    return float(spearmanr(width, removed_share).statistic)


def _prune_summary(p: PruneParameters, history: pd.DataFrame, correlation: float) -> dict:
    final, original = history.iloc[-1], history.iloc[0]
    return {
        "run": p.run,
        "arch": p.arch,
        "criterion": p.criterion,
        "normalize_scores": p.normalize_scores,
        # what a random-removal null of the width claim must respect (analysis.width_null)
        "min_channels": p.min_channels,
        "channel_multiple": p.channel_multiple,
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


def _final_eer_threshold(pair_scores: dict[str, Any]) -> float | None:
    """The 1-image EER threshold of the final network (the last row of the pair scores); None
    without 1-image pairs of both kinds."""
    if "t1" not in pair_scores.get("scores", {}):
        return None
    genuine = pair_scores["pairs"]["t1"]["genuine"]
    if not genuine.any() or genuine.all():
        return None
    return eer_threshold(pair_scores["scores"]["t1"][-1].double().numpy(), genuine.numpy())


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


def run(params: PruneParameters | None = None, /, **given: Any) -> PruneRun:
    """Prune a baseline iteratively; write the pruned model, metrics, history and layers.

    Parameters: :class:`~facepruning.parameters.PruneParameters`, as a dataclass or by name.
    Returns a :class:`PruneRun`.
    """
    p = _repeat_steps(parameters.resolve("prune", params, given))
    here = distributed.init_from_env()
    model, meta, inputs = pruning_inputs(p.baseline_path, p.data_dir, arch=p.arch)
    device = distributed.default_device()
    model.to(device)
    identity = {
        **parameters.run_identity(p),
        "baseline": meta["run_fingerprint"],
        "data": data_identity(inputs.data.info),
    }

    def measure(net):
        if not here.is_main:  # only rank 0 records metrics
            return {}
        return evaluate(net, inputs, with_pair_scores=True)

    result = prune_iteratively(
        model,
        train_set=inputs.train_set,
        train_transform=inputs.train_transform,
        evaluate=measure,
        example_input=torch.zeros(1, 3, inputs.image_size, inputs.image_size, device=device),
        config=p,
        checkpoint_dir=checkpoints(p.checkpoint_dir),
        run_identity=identity,
    )
    rows, pair_scores = split_pair_scores(result.history)
    history = pd.DataFrame(rows)
    layers = pd.DataFrame({row["step"]: row["sizes"] for row in result.layers})
    correlation = _width_rank_correlation(layers)
    summary: dict[str, Any] = {}
    if here.is_main:
        summary = _prune_summary(p, history, correlation)
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
    return PruneRun(
        result.model, result, history, layers, correlation, summary, inputs, p, meta, run_id
    )
