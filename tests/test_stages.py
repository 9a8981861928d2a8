"""The training and pruning stages (what notebooks 02 and 03 and the CLI run), end to end on a
tiny ORL set; their parameters against the notebooks' and the params files'."""

from __future__ import annotations

import ast

import pandas as pd
import pytest
import yaml

from facepruning import cli, stages
from facepruning.artifacts import read_json
from facepruning.errors import ParameterError
from facepruning.manifest import prepare_dataset
from facepruning.project import notebook_parameters, project_root
from facepruning.surgery import load_model

ROOT = project_root(__file__)


def _declared(notebook):
    return {
        name: ast.literal_eval(default) if isinstance(default, str) else default
        for name, default in notebook_parameters(ROOT / "notebooks" / notebook).items()
    }


def test_stage_parameters_are_the_notebooks_parameters():
    assert _declared("02_baseline_training.ipynb") == stages.TRAIN_PARAMETERS
    assert _declared("03_taylor_pruning.ipynb") == stages.PRUNE_PARAMETERS


def test_paper_params_have_the_sections_and_keys_of_params_yaml():
    ours = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "params-paper.yaml").read_text())
    assert set(paper) == set(ours)
    for section, values in ours.items():
        if isinstance(values, dict) and section != "prune_runs":
            assert set(paper[section]) == set(values), section
    assert paper["prepare"]["dataset"] == "vggface2"
    assert (paper["prepare"]["resize"], paper["prepare"]["image_size"]) == (129, 113)
    assert paper["train"]["pixel_mean"] == [131.0912, 103.8827, 91.4953]
    assert (paper["train"]["batch_size"], paper["prune"]["filters_per_step"]) == (128, 8)
    assert (paper["prune"]["score_batches"], paper["prune"]["lr"]) == (50, 0.01)


@pytest.mark.parametrize("params_file", ["params.yaml", "params-paper.yaml"])
def test_params_files_feed_the_stages(params_file):
    params = yaml.safe_load((ROOT / params_file).read_text())
    stages.check_parameters(params["train"], stages.TRAIN_PARAMETERS, stage="train")
    stages.check_parameters(params["prune"], stages.PRUNE_PARAMETERS, stage="prune")


def test_unknown_parameters_are_rejected_with_the_accepted_ones():
    with pytest.raises(ParameterError, match=r"no parameter\(s\) \['epoch'\].*'epochs'"):
        stages.train_stage(epoch=3)
    with pytest.raises(ParameterError, match="'filters_per_step'"):
        stages.prune_stage(filters=8)


def test_cli_rejects_unknown_parameters(capsys):
    params = str(ROOT / "params.yaml")
    assert cli.main(["train", "--params", params, "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "epochs" in err
    assert cli.main(["prune", "--params", params, "--section", "train"]) == 2
    assert "no parameter(s)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def orl(tmp_path_factory):
    root = tmp_path_factory.mktemp("orl")
    common = {
        "dataset": "orl",
        "raw_dir": root / "raw",
        "resize": 20,
        "image_size": 16,
        "test_identities": 10,
        "progress": False,
    }
    prepare_dataset(out_dir=root / "cached", **common)
    prepare_dataset(out_dir=root / "streamed", cache=False, **common)
    return root


def _train_params(out, data_dir, **extra):
    return {
        "data_dir": str(data_dir),
        "model_path": str(out / "baseline.pt"),
        "metrics_path": str(out / "train.json"),
        "history_path": str(out / "train_history.csv"),
        "figures_dir": str(out / "ignored"),
        "checkpoint_dir": str(out / "ckpt-train"),
        "epochs": 1,
        **extra,
    }


def test_train_and_prune_stages_write_what_the_notebooks_write(orl, tmp_path):
    run = stages.train_stage(**_train_params(tmp_path, orl / "cached"))
    summary = read_json(tmp_path / "train.json")
    assert {"arch", "epochs_run", "params", "macs", "train_seconds", "val/acc", "t1/eer"} <= set(
        summary
    )
    history = pd.read_csv(tmp_path / "train_history.csv")
    assert list(history.columns) == list(run.history.columns) and len(history) == 1
    model, meta = load_model(tmp_path / "baseline.pt")
    assert meta["run_fingerprint"] == run.run_id and meta["image_size"] == 16
    assert not (tmp_path / "ignored").exists()  # figures are the notebook's business

    pruned = stages.prune_stage(
        data_dir=str(orl / "cached"),
        baseline_path=str(tmp_path / "baseline.pt"),
        model_path=str(tmp_path / "pruned.pt"),
        metrics_path=str(tmp_path / "prune.json"),
        history_path=str(tmp_path / "prune_history.csv"),
        layers_path=str(tmp_path / "prune_layers.csv"),
        checkpoint_dir=str(tmp_path / "ckpt-prune"),
        max_steps=1,
        score_batches=1,
        finetune_epochs=0,
        final_finetune_epochs=0,
    )
    result = read_json(tmp_path / "prune.json")
    assert result["params_final"] < result["params_original"]
    assert {"width_rank_correlation", "original", "final", "steps"} <= set(result)
    layers = pd.read_csv(tmp_path / "prune_layers.csv", index_col="group")
    assert list(layers.columns) == ["0", "1"] and len(layers) == len(pruned.layers)
    assert list(pd.read_csv(tmp_path / "prune_history.csv").stage) == [
        "original",
        "pruned",
        "final",
    ]
    reloaded, meta = load_model(tmp_path / "pruned.pt")
    assert meta["criterion"] == "taylor_activation" and meta["arch"] == "squeezenet"


def test_streamed_data_with_workers_trains_like_the_cache(orl, tmp_path):
    cached = stages.train_stage(**_train_params(tmp_path / "a", orl / "cached", checkpoint_dir=""))
    streamed = stages.train_stage(
        **_train_params(tmp_path / "b", orl / "streamed", checkpoint_dir="", num_workers=1)
    )
    assert streamed.inputs.data.images is None  # read from the image files
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(streamed.history[cols], cached.history[cols])
