"""The SqueezerFaceNet pick as files in every clone (``python -m facepruning pick``).

Notebook 04 picks the smallest SqueezeNet along its Taylor path whose validation EER stays within
the tolerance (:func:`~facepruning.analysis.squeezerfacenet_pick`; ``squeezerfacenet`` in
metrics/analysis.json names its run, step and stage). A pruning run keeps only its last network,
so :func:`replay` runs the same pruning again up to the chosen step: every step draws from
generators seeded by (seed, step) (:class:`~facepruning.stages.prune.FaceTraining`), so the
replay computes the chosen network bit for bit on the same kernels. It proves it: the replayed
network is evaluated again and its recorded metrics must equal the run's history row, or nothing
is written.

:func:`run` saves the network (state dict plus channel layout,
:func:`~facepruning.models.save_model`) and its ONNX embedder
(:func:`~facepruning.export.export_onnx`), small enough to commit: the pipeline's ``pick``
stage writes ``models/squeezerfacenet.pt`` and ``.onnx``, which
:func:`facepruning.load_embedder` opens in a fresh clone without running anything.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import artifacts, parameters
from .errors import DataError, ModelError
from .export import export_onnx
from .models import FaceNet, save_model
from .project import load_params
from .stages import prune
from .stages.common import evaluate, threshold_of

__all__ = ["replay", "run", "CHECKED"]

#: The history columns the replayed network must reproduce exactly.
CHECKED = ("params", "val/t1/eer", "t1/eer", "t5/eer")


def _prune_parameters(
    params_path: str | Path, run: str, data_dir: str, baseline_dir: str | Path
) -> Any:
    """The prune stage's parameters of ``run``: params.yaml's ``prune`` section and its
    ``prune_runs`` entry, as dvc.yaml passes them."""
    runs = load_params(params_path, ["prune_runs"])
    if run not in runs:
        raise DataError(
            f"{params_path}: prune_runs has no {run!r}, the pick's run: rerun `dvc repro` so that "
            "the analysis and the parameters agree"
        )
    given = {**load_params(params_path, ["prune"]), **runs[run], "run": run}
    given.update(
        data_dir=str(data_dir),
        baseline_path=str(Path(baseline_dir) / runs[run]["arch"] / "baseline.pt"),
    )
    return parameters.parse("prune", given)


def replay(p: Any, step: int, stage: str) -> tuple[FaceNet, dict[str, Any], dict[str, Any]]:
    """The network of the pruning run ``p`` at ``step`` as ``stage`` (pruned, finetuned or
    final), its row (``evaluate``'s metrics with step and stage) and the baseline's metadata."""
    last = stage == "final"
    p = replace(
        p,
        max_steps=p.max_steps if last else step,
        final_finetune_epochs=p.final_finetune_epochs if last else 0,
        checkpoint_dir="",
    )
    model, meta, inputs = prune.pruning_inputs(p.baseline_path, p.data_dir, arch=p.arch)
    # the replay stops at the asked step, so its row is one of the last three measured (pruned,
    # fine-tuned, and the final row the loop always ends with): only those networks are kept
    snapshots: deque[FaceNet] = deque(maxlen=3)

    def measure(net: FaceNet) -> dict[str, Any]:
        snapshots.append(copy.deepcopy(net).cpu().eval())
        return evaluate(net, inputs, with_pair_scores=True)

    example = torch.zeros(1, 3, inputs.image_size, inputs.image_size)
    result = prune.prune_faces(
        model,
        example,
        prune.FaceTraining(inputs.train_set, inputs.train_transform, p),
        evaluate=measure,
        progress=False,
    )
    rows = [(r["step"], r["stage"]) for r in result.history]
    if (step, stage) not in rows:
        raise DataError(f"{p.run}: the replay has no row at step {step} ({stage}); it has {rows}")
    row = rows.index((step, stage))
    at = row - (len(rows) - len(snapshots))
    if at < 0:
        raise DataError(
            f"{p.run}: step {step} ({stage}) is not among the replay's last rows {rows[-3:]}"
        )
    return snapshots[at], result.history[row], meta


def _check_reproduces(row: Mapping[str, Any], history: pd.DataFrame, where: str) -> None:
    """The replayed row equals the run's recorded one in every :data:`CHECKED` column."""
    recorded = history[(history["step"] == row["step"]) & (history["stage"] == row["stage"])]
    if recorded.empty:
        raise DataError(f"{where} has no row at step {row['step']} ({row['stage']})")
    for column in CHECKED:
        want, got = float(recorded[column].iloc[0]), float(row.get(column, math.nan))
        if not (want == got or (math.isnan(want) and math.isnan(got))):
            raise ModelError(
                f"the replay of step {row['step']} ({row['stage']}) gives {column} = {got!r}, "
                f"{where} recorded {want!r}: the code, data or kernels changed since that run; "
                "rerun it (dvc repro) before picking"
            )


def run(
    analysis_path: str | Path,
    model_path: str | Path,
    onnx_path: str | Path,
    *,
    params_path: str | Path = "params.yaml",
    data_dir: str | Path = "data/processed",
    baseline_dir: str | Path = "models",
    prune_dir: str | Path = "metrics/prune",
) -> dict[str, Any]:
    """Write the pick named in ``analysis_path`` as ``model_path`` (.pt) and ``onnx_path``;
    return the pick's entry, with the replayed metrics it was checked on. The run's parameters
    come from ``params_path`` (``prune`` and ``prune_runs``), as dvc.yaml passes them: the data
    in ``data_dir``, the baseline ``<baseline_dir>/<arch>/baseline.pt``, the recorded history
    ``<prune_dir>/<run>_history.csv``."""
    pick = artifacts.read_json(analysis_path).get("squeezerfacenet")
    if not pick:
        raise DataError(f"{analysis_path} names no SqueezerFaceNet pick: run the analysis first")
    p = _prune_parameters(params_path, pick["run"], data_dir, baseline_dir)
    history_path = Path(prune_dir) / f"{pick['run']}_history.csv"
    net, row, meta = replay(p, int(pick["step"]), pick["stage"])
    _check_reproduces(row, pd.read_csv(history_path), str(history_path))
    pick_meta = {
        **meta,
        "criterion": p.criterion,
        "channel_multiple": p.channel_multiple,
        "filters_removed_pct": float(row["filters_removed_pct"]),
        "eer_threshold": threshold_of(row),
        "pick": {k: pick[k] for k in ("run", "step", "stage", "selected_on")},
    }
    save_model(model_path, net, meta=pick_meta)
    export_onnx(model_path, onnx_path)
    return {**pick, "replayed": {k: row.get(k) for k in CHECKED}}
