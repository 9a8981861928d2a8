"""The pipeline's training and pruning stages as functions: what notebooks 02 and 03 run, and
what ``python -m facepruning train|prune`` (also under ``torchrun``) runs.

:func:`train_stage` and :func:`prune_stage` take exactly the parameters of the notebooks'
``parameters`` cells (:data:`TRAIN_PARAMETERS`, :data:`PRUNE_PARAMETERS`, same names and defaults),
so a section of params.yaml feeds either. ``figures_dir`` is accepted and ignored: figures are the
notebooks' business, and accepting it lets the DVC stages' ``--set`` lines work unchanged on the
command line. Any other name raises :class:`~facepruning.errors.ParameterError`.

Each stage loads the prepared data, builds (or loads) the network on
:func:`~facepruning.distributed.default_device`, trains or prunes with checkpoints under
``checkpoint_dir`` (resumed when the run fingerprint matches), evaluates, and writes the model
(:func:`~facepruning.surgery.save_model`), the metrics JSON and the history CSV (and the layer
widths CSV for pruning) atomically. Under torchrun the work is data-parallel and rank 0 alone
evaluates and writes; the other ranks wait at a barrier and return empty metrics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from . import artifacts, distributed
from .errors import ModelError, ParameterError
from .loaders import BatchTransform, FaceDataset, PreparedData, load_prepared
from .models import build_model, count_macs, count_parameters
from .pruning import PruningConfig, PruningResult, prune_iteratively
from .surgery import load_model, save_model
from .training import TrainConfig, evaluate_face_model, train_identification

__all__ = [
    "TRAIN_PARAMETERS",
    "PRUNE_PARAMETERS",
    "StageData",
    "TrainRun",
    "PruneRun",
    "check_parameters",
    "training_data",
    "pruning_inputs",
    "train_stage",
    "prune_stage",
]

# The parameters cell of notebooks/02_baseline_training.ipynb (a test keeps them equal).
TRAIN_PARAMETERS: dict[str, Any] = {
    "arch": "squeezenet",
    "data_dir": "build/nbval/data/processed",
    "model_path": "build/nbval/models/squeezenet/baseline.pt",
    "metrics_path": "build/nbval/metrics/train/squeezenet.json",
    "history_path": "build/nbval/metrics/train/squeezenet_history.csv",
    "figures_dir": "build/nbval/figures/02_baseline_training/squeezenet",
    "checkpoint_dir": "build/nbval/checkpoints/train/squeezenet",
    "epochs": 3,
    "batch_size": 32,
    "lr_levels": [0.01, 0.005, 0.001, 0.0001],
    "patience": 3,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "seed": 0,
    "random_crop": True,
    "hflip": True,
    "pixel_mean": None,
    "pixel_std": None,
    "weights": None,
    "num_workers": 0,
}

# The parameters cell of notebooks/03_taylor_pruning.ipynb (a test keeps them equal).
PRUNE_PARAMETERS: dict[str, Any] = {
    "arch": "squeezenet",
    "criterion": "taylor_activation",
    "data_dir": "build/nbval/data/processed",
    "baseline_path": "build/nbval/models/squeezenet/baseline.pt",
    "model_path": "build/nbval/models/squeezenet/pruned_taylor_activation.pt",
    "metrics_path": "build/nbval/metrics/prune/squeezenet-taylor_activation.json",
    "history_path": "build/nbval/metrics/prune/squeezenet-taylor_activation_history.csv",
    "layers_path": "build/nbval/metrics/prune/squeezenet-taylor_activation_layers.csv",
    "figures_dir": "build/nbval/figures/03_taylor_pruning/squeezenet-taylor_activation",
    "checkpoint_dir": "build/nbval/checkpoints/prune/squeezenet-taylor_activation",
    "filters_per_step": 0.05,
    "max_steps": 3,
    "target_fraction": None,
    "score_batches": 2,
    "train_during_scoring": True,
    "lr": 0.001,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "batch_size": 32,
    "finetune_epochs": 1,
    "finetune_lr": 0.001,
    "final_finetune_epochs": 1,
    "normalize_scores": True,
    "bn_recalibration_batches": 2,
    "seed": 0,
    "num_workers": 0,
}


def check_parameters(
    given: Mapping[str, Any], accepted: Mapping[str, Any], *, stage: str
) -> dict[str, Any]:
    """``accepted`` (the defaults) updated with ``given``; unknown names raise ParameterError."""
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ParameterError(
            f"the {stage} stage has no parameter(s) {unknown}; it accepts {sorted(accepted)}"
        )
    return {**accepted, **given}


@dataclass
class StageData:
    """The prepared data, its three splits and the batch transforms a stage uses."""

    data: PreparedData
    train_set: FaceDataset
    val_set: FaceDataset
    test_set: FaceDataset
    train_transform: BatchTransform
    eval_transform: BatchTransform
    image_size: int
    pixel_mean: list[float]
    pixel_std: list[float]


def _as_list(values) -> list[float]:
    t = torch.as_tensor(values, dtype=torch.float64).flatten()
    return [float(v) for v in t.tolist()]


def training_data(
    data_dir: str | Path,
    *,
    pixel_mean: Sequence[float] | float | None = None,
    pixel_std: Sequence[float] | float | None = None,
    random_crop: bool = True,
    hflip: bool = True,
    image_size: int | None = None,
) -> StageData:
    """Load ``data_dir`` and build the transforms: ``pixel_mean``/``pixel_std`` None take the
    training images' statistics from dataset.json; ``image_size`` None takes the prepared crop."""
    data = load_prepared(data_dir)
    image_size = int(data.info["image_size"] if image_size is None else image_size)
    mean = data.info["mean"] if pixel_mean is None else pixel_mean
    std = data.info["std"] if pixel_std is None else pixel_std
    norm = {"image_size": image_size, "mean": mean, "std": std}
    return StageData(
        data=data,
        train_set=FaceDataset(data, "train"),
        val_set=FaceDataset(data, "val"),
        test_set=FaceDataset(data, "test"),
        train_transform=BatchTransform(train=True, hflip=hflip, random_crop=random_crop, **norm),
        eval_transform=BatchTransform(train=False, **norm),
        image_size=image_size,
        pixel_mean=_as_list(mean),
        pixel_std=_as_list(std),
    )


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
class TrainRun:
    """What :func:`train_stage` did: the trained network and what the notebook shows."""

    model: nn.Module
    history: pd.DataFrame
    metrics: dict[str, Any]
    summary: dict[str, Any]
    inputs: StageData
    config: TrainConfig
    meta: dict[str, Any]
    run_id: str
    params: dict[str, Any] = field(default_factory=dict)


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
    config: PruningConfig
    meta: dict[str, Any]
    run_id: str
    params: dict[str, Any] = field(default_factory=dict)


def _write_csv(path, frame: pd.DataFrame, **kwargs) -> None:
    with artifacts.atomic_path(path) as tmp:
        frame.to_csv(tmp, **kwargs)


def _config(cls, params: Mapping[str, Any]):
    """The ``cls`` dataclass (TrainConfig, PruningConfig) from the parameters it has fields for."""
    return cls(**{f.name: params[f.name] for f in dataclasses.fields(cls) if f.name in params})


def train_stage(**params: Any) -> TrainRun:
    """Train one architecture on the prepared data; write model, metrics and history.

    Parameters: :data:`TRAIN_PARAMETERS` (notebook 02's). Returns a :class:`TrainRun`.
    """
    p = check_parameters(params, TRAIN_PARAMETERS, stage="train")
    config = _config(TrainConfig, p)
    here = distributed.init_from_env()
    inputs = training_data(
        p["data_dir"],
        pixel_mean=p["pixel_mean"],
        pixel_std=p["pixel_std"],
        random_crop=p["random_crop"],
        hflip=p["hflip"],
    )
    data = inputs.data
    num_classes = data.num_classes
    torch.manual_seed(p["seed"])  # the initial weights (the same on every rank)
    model = build_model(p["arch"], num_classes=num_classes, weights=p["weights"])
    model.to(distributed.default_device())
    run_id = artifacts.fingerprint(
        {
            "arch": p["arch"],
            "config": vars(config),
            "data": data.info,
            "transform": [inputs.pixel_mean, inputs.pixel_std, p["random_crop"], p["hflip"]],
            "weights": p["weights"],
        }
    )
    history = pd.DataFrame(
        train_identification(
            model,
            train_set=inputs.train_set,
            val_set=inputs.val_set,
            train_transform=inputs.train_transform,
            eval_transform=inputs.eval_transform,
            config=config,
            checkpoint_dir=Path(p["checkpoint_dir"]) if p["checkpoint_dir"] else None,
            run_fingerprint=run_id,
        )
    )
    meta = {
        "arch": p["arch"],
        "num_classes": num_classes,
        "image_size": inputs.image_size,
        "pixel_mean": inputs.pixel_mean,
        "pixel_std": inputs.pixel_std,
        "random_crop": p["random_crop"],
        "hflip": p["hflip"],
        "run_fingerprint": run_id,
    }
    metrics: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    if here.is_main:
        metrics = evaluate_face_model(
            model,
            val_set=inputs.val_set,
            test_set=inputs.test_set,
            manifest=data.manifest,
            transform=inputs.eval_transform,
            pairs=data.pairs,
        )
        save_model(p["model_path"], model, meta=meta)
        summary = {
            "arch": p["arch"],
            "epochs_run": len(history),
            "params": count_parameters(model),
            "macs": count_macs(model, image_size=inputs.image_size),
            "train_seconds": float(history["seconds"].sum()) if len(history) else 0.0,
            **metrics,
        }
        artifacts.write_json(p["metrics_path"], summary)
        _write_csv(p["history_path"], history, index=False)
    distributed.barrier()
    return TrainRun(model, history, metrics, summary, inputs, config, meta, run_id, p)


def _width_rank_correlation(layers: pd.DataFrame) -> float:
    """Spearman correlation of a group's original width and the share of it removed."""
    width = layers.iloc[:, 0]
    removed_share = 1 - layers.iloc[:, -1] / width
    if not removed_share.std() > 0:
        return float("nan")
    ranks = pd.DataFrame({"width": width, "removed": removed_share}).rank()
    return float(ranks.corr().iloc[0, 1])


def prune_stage(**params: Any) -> PruneRun:
    """Prune a baseline iteratively; write the pruned model, metrics, history and layers.

    Parameters: :data:`PRUNE_PARAMETERS` (notebook 03's). Returns a
    :class:`PruneRun`.
    """
    p = check_parameters(params, PRUNE_PARAMETERS, stage="prune")
    config = _config(PruningConfig, p)
    here = distributed.init_from_env()
    model, meta, inputs = pruning_inputs(p["baseline_path"], p["data_dir"], arch=p["arch"])
    data = inputs.data
    device = distributed.default_device()
    model.to(device)
    run_id = artifacts.fingerprint(
        {"baseline": meta["run_fingerprint"], "config": vars(config), "data": data.info}
    )

    def evaluate(net):
        if not here.is_main:  # only rank 0 records metrics
            return {}
        return evaluate_face_model(
            net,
            val_set=inputs.val_set,
            test_set=inputs.test_set,
            manifest=data.manifest,
            transform=inputs.eval_transform,
            pairs=data.pairs,
        )

    result = prune_iteratively(
        model,
        train_set=inputs.train_set,
        train_transform=inputs.train_transform,
        evaluate=evaluate,
        example_input=torch.zeros(1, 3, inputs.image_size, inputs.image_size, device=device),
        config=config,
        checkpoint_dir=Path(p["checkpoint_dir"]) if p["checkpoint_dir"] else None,
        run_fingerprint=run_id,
    )
    history = pd.DataFrame(result.history)
    layers = pd.DataFrame({row["step"]: row["sizes"] for row in result.layers})
    correlation = _width_rank_correlation(layers)
    summary: dict[str, Any] = {}
    if here.is_main:
        final, original = history.iloc[-1], history.iloc[0]
        save_model(
            p["model_path"],
            result.model,
            meta={
                **meta,
                "criterion": p["criterion"],
                "filters_removed_pct": float(final.filters_removed_pct),
            },
        )
        summary = {
            "arch": p["arch"],
            "criterion": p["criterion"],
            "steps": int(history.step.max()),
            "filters_removed_pct": float(final.filters_removed_pct),
            "params_original": int(original.params),
            "params_final": int(final.params),
            "macs_original": int(original.macs),
            "macs_final": int(final.macs),
            "width_rank_correlation": correlation,
            "original": {k: original[k] for k in history.columns if "/" in k},
            "final": {k: final[k] for k in history.columns if "/" in k},
        }
        artifacts.write_json(p["metrics_path"], summary)
        _write_csv(p["history_path"], history, index=False)
        _write_csv(p["layers_path"], layers.rename_axis("group"))
    distributed.barrier()
    return PruneRun(
        result.model, result, history, layers, correlation, summary, inputs, config, meta, run_id, p
    )
