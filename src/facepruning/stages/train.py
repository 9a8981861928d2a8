"""The train stage (notebook 02, ``python -m facepruning train``): a backbone trained for
identification, evaluated on held-out identities, saved with its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from .. import artifacts, distributed, parameters
from ..kernels import kernel_settings
from ..models import build_model, count_macs, count_parameters, save_model
from ..parameters import TrainParameters
from ..training import train_identification
from .common import (
    StageData,
    claimed,
    data_fingerprint,
    data_identity,
    evaluate,
    threshold_of,
    training_data,
)

__all__ = ["TrainStageRun", "run", "training_data"]


@dataclass
class TrainStageRun:
    """What the train stage did: the trained network and what the notebook shows."""

    model: nn.Module
    history: pd.DataFrame
    metrics: dict[str, Any]
    summary: dict[str, Any]
    inputs: StageData
    params: TrainParameters
    meta: dict[str, Any]
    run_id: str
    train_seconds: float = 0.0


def run(params: TrainParameters | None = None, /, **given: Any) -> TrainStageRun:
    """Train one architecture on the prepared data; write model, metrics and history.

    Parameters: :class:`~facepruning.parameters.TrainParameters`, as a dataclass or by name
    (unknown names and wrong types raise ParameterError). Returns a :class:`TrainStageRun`.
    """
    p = parameters.resolve("train", params, given)
    with claimed([p.model_path, p.metrics_path, p.history_path], p.checkpoint_dir):
        return _run(p)


def _run(p: TrainParameters) -> TrainStageRun:
    here = distributed.init_from_env()
    inputs = training_data(
        p.data_dir,
        pixel_mean=p.pixel_mean,
        pixel_std=p.pixel_std,
        random_crop=p.random_crop,
        hflip=p.hflip,
    )
    torch.manual_seed(p.seed)  # the initial weights (the same on every rank)
    model = build_model(p.arch, num_classes=inputs.data.num_classes, weights=p.weights)
    model.to(distributed.default_device())
    # everything the result depends on: parameters, data (description and content), code, kernels
    identity = {
        **parameters.run_identity(p),
        "data": data_identity(inputs.data.info),
        "data_files": data_fingerprint(p.data_dir, inputs.data.info),
        "transform": [inputs.pixel_mean, inputs.pixel_std],
        "code": artifacts.code_fingerprint(),
        "kernels": kernel_settings(),
    }
    history = pd.DataFrame(
        train_identification(
            model,
            train_set=inputs.train_set,
            val_set=inputs.val_set,
            train_transform=inputs.train_transform,
            eval_transform=inputs.eval_transform,
            config=p,
            checkpoint_dir=p.checkpoint_dir or None,
            run_identity=identity,
        )
    )
    # Wall-clock time differs on every run: it stays out of the files later stages read.
    seconds = float(history.pop("seconds").sum()) if "seconds" in history else 0.0
    meta = {
        "arch": p.arch,
        "num_classes": inputs.data.num_classes,
        "image_size": inputs.image_size,
        "resize": int(inputs.data.info["resize"]),
        "channels": int(inputs.data.info["channels"]),  # 1: grayscale training images
        "pixel_mean": inputs.pixel_mean,
        "pixel_std": inputs.pixel_std,
        "random_crop": p.random_crop,
        "hflip": p.hflip,
        # without the code's hash: the model's bytes must not change with an unrelated edit
        "run_fingerprint": artifacts.fingerprint({**identity, "code": None}),
        "data_fingerprint": identity["data_files"],  # pruning checks it against its data
    }
    metrics: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    if here.is_main:
        metrics = evaluate(model, inputs, with_pair_scores=True)
        meta["eer_threshold"] = threshold_of(metrics)  # what an embedder's verify() decides at
        metrics.pop("pair_scores")
        metrics.pop("test_identities")
        save_model(p.model_path, model, meta=meta)
        summary = {
            "arch": p.arch,
            "epochs_run": len(history),
            # the plateau schedule ran out (a plateau on its last level) before the epoch cap
            "converged": bool(len(history) and history["schedule_finished"].iloc[-1]),
            "params": count_parameters(model),
            "macs": count_macs(model, image_size=inputs.image_size),
            **metrics,
        }
        artifacts.write_json(p.metrics_path, summary)
        artifacts.write_csv(p.history_path, history, index=False)
    distributed.barrier()
    return TrainStageRun(
        model, history, metrics, summary, inputs, p, meta, meta["run_fingerprint"], seconds
    )
