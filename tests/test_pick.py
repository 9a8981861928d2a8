"""The SqueezerFaceNet pick written as files (facepruning.pick): the replayed network is the one
the pruning run recorded at the chosen step, checked by evaluating the written file again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import facepruning
from facepruning import pick
from facepruning.artifacts import write_json
from facepruning.errors import ModelError
from facepruning.models import count_parameters, load_model
from facepruning.prepare import prepare_dataset
from facepruning.stages import prune, train
from facepruning.stages.common import evaluate

pytest.importorskip("onnxruntime")

PRUNE = {
    "max_steps": 2,
    "filters_per_step": 0.1,
    "score_batches": 1,
    "finetune_epochs": 1,
    "final_finetune_epochs": 1,
    "batch_size": 16,
}
RUNS = {"tiny-taylor": {"arch": "squeezenet", "criterion": "taylor_activation"}}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A tiny pipeline's files: prepared ORL, a baseline, one Taylor run and params.yaml."""
    root = tmp_path_factory.mktemp("pick")
    data = root / "data" / "processed"
    prepare_dataset(
        dataset="orl", raw_dir=root / "raw", out_dir=data, resize=20, image_size=16, progress=False
    )
    baseline = root / "models" / "squeezenet" / "baseline.pt"
    train.run(
        data_dir=str(data),
        model_path=str(baseline),
        metrics_path=str(root / "train.json"),
        history_path=str(root / "train_history.csv"),
        checkpoint_dir="",
        epochs=1,
    )
    (root / "params.yaml").write_text(yaml.safe_dump({"prune": PRUNE, "prune_runs": RUNS}))
    out = root / "metrics" / "prune"
    prune.run(
        run="tiny-taylor",
        **RUNS["tiny-taylor"],
        **PRUNE,
        data_dir=str(data),
        baseline_path=str(baseline),
        model_path=str(root / "pruned.pt"),
        metrics_path=str(out / "tiny-taylor.json"),
        history_path=str(out / "tiny-taylor_history.csv"),
        layers_path=str(out / "tiny-taylor_layers.csv"),
        scores_path=str(root / "scores.pt"),
        checkpoint_dir="",
    )
    return root


def _pick(root, step, stage, name):
    write_json(
        root / f"{name}.json",
        {
            "squeezerfacenet": {
                "run": "tiny-taylor",
                "step": step,
                "stage": stage,
                "selected_on": "val/t1/eer",
            }
        },
    )
    return pick.run(
        root / f"{name}.json",
        root / f"{name}.pt",
        root / f"{name}.onnx",
        params_path=root / "params.yaml",
        data_dir=root / "data" / "processed",
        baseline_dir=root / "models",
        prune_dir=root / "metrics" / "prune",
    )


@pytest.mark.parametrize(("step", "stage"), [(1, "finetuned"), (2, "pruned"), (2, "final")])
def test_the_written_pick_is_the_network_the_run_recorded_at_its_step(pipeline, step, stage):
    name = f"pick-{step}-{stage}"
    _pick(pipeline, step, stage, name)
    history = pd.read_csv(pipeline / "metrics" / "prune" / "tiny-taylor_history.csv")
    row = history[(history.step == step) & (history.stage == stage)].iloc[0]
    model, meta = load_model(pipeline / f"{name}.pt")
    assert meta["pick"] == {
        "run": "tiny-taylor",
        "step": step,
        "stage": stage,
        "selected_on": "val/t1/eer",
    }
    assert count_parameters(model) == row.params
    # evaluated again from the file, independently of the replay's own check
    inputs = prune.pruning_inputs(
        pipeline / "models" / "squeezenet" / "baseline.pt",
        pipeline / "data" / "processed",
        arch="squeezenet",
    )[2]
    metrics = evaluate(model.eval(), inputs)
    for column in ("t1/eer", "val/t1/eer", "t5/eer"):
        assert metrics[column] == pytest.approx(row[column], abs=1e-12), column
    # the ONNX embedder computes the same descriptors as the model file
    faces = [inputs.data.data_root / p for p in sorted(inputs.data.manifest.path)[:3]]
    pt = facepruning.load_embedder(pipeline / f"{name}.pt").embed(faces)
    ox = facepruning.load_embedder(pipeline / f"{name}.onnx").embed(faces)
    assert float(np.abs(pt - ox).max()) < 1e-5


def test_a_replay_that_does_not_reproduce_its_row_writes_nothing(pipeline):
    history_path = pipeline / "metrics" / "prune" / "tiny-taylor_history.csv"
    kept = history_path.read_text()
    history = pd.read_csv(history_path)
    history.loc[(history.step == 1) & (history.stage == "finetuned"), "t1/eer"] += 0.01
    history.to_csv(history_path, index=False)
    try:
        with pytest.raises(ModelError, match="t1/eer.*rerun it"):
            _pick(pipeline, 1, "finetuned", "tampered")
    finally:
        history_path.write_text(kept)
    assert not (pipeline / "tampered.pt").exists() and not (pipeline / "tampered.onnx").exists()
