"""The training and pruning stages (what notebooks 02 and 03 and the CLI run), end to end on a
tiny ORL set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_curve

from facepruning import cli, verification
from facepruning.artifacts import load_torch, read_json
from facepruning.errors import ArtifactError, ModelError, ParameterError
from facepruning.models import load_model
from facepruning.prepare import prepare_dataset
from facepruning.project import project_root
from facepruning.stages import prune, train
from facepruning.training import extract_descriptors

ROOT = project_root(__file__)


def test_paper_params_have_the_sections_and_keys_of_params_yaml():
    ours = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = yaml.safe_load((ROOT / "params-paper.yaml").read_text())
    assert set(paper) == set(ours)
    for section, values in ours.items():
        if isinstance(values, dict) and section not in ("prune_runs", "replicates"):
            assert set(paper[section]) == set(values), section
    assert paper["prepare"]["dataset"] == "vggface2"
    assert (paper["prepare"]["resize"], paper["prepare"]["image_size"]) == (129, 113)
    assert paper["train"]["pixel_mean"] == [131.0912, 103.8827, 91.4953]
    assert (paper["train"]["batch_size"], paper["prune"]["filters_per_step"]) == (128, 8)
    assert (paper["prune"]["score_batches"], paper["prune"]["lr"]) == (50, 0.01)


def test_unknown_parameters_are_rejected_before_any_work():
    with pytest.raises(ParameterError, match=r"no parameter 'epoch': did you mean 'epochs'"):
        train.run(epoch=3)
    with pytest.raises(ParameterError, match="'filters_per_step'"):
        prune.run(filters=8)


def test_cli_rejects_unknown_parameters(capsys):
    params = str(ROOT / "params.yaml")
    assert cli.main(["train", "--params", params, "--set", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "epochs" in err
    assert cli.main(["prune", "--params", params, "--section", "train"]) == 2
    assert "no parameter" in capsys.readouterr().err


def test_the_pruned_model_keeps_the_eer_threshold_of_its_last_row():
    genuine = torch.tensor([True, False, True, False, False])
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3], [0.7, 0.6, 0.5, 0.4, 0.1]])
    pair_scores = {"pairs": {"t1": {"genuine": genuine}}, "scores": {"t1": scores}}
    assert prune._final_eer_threshold(pair_scores) == 0.5  # first FAR >= FRR of the last row
    assert prune._final_eer_threshold({}) is None
    one_kind = {"pairs": {"t1": {"genuine": genuine | True}}, "scores": {"t1": scores}}
    assert prune._final_eer_threshold(one_kind) is None


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
    run = train.run(**_train_params(tmp_path, orl / "cached"))
    summary = read_json(tmp_path / "train.json")
    assert {"arch", "epochs_run", "params", "macs", "val/acc", "t1/eer"} <= set(summary)
    # wall-clock time differs on every run: it stays out of the files later stages read
    assert "train_seconds" not in summary and run.train_seconds > 0
    history = pd.read_csv(tmp_path / "train_history.csv")
    assert list(history.columns) == list(run.history.columns) and len(history) == 1
    assert "seconds" not in history.columns
    model, meta = load_model(tmp_path / "baseline.pt")
    assert meta["run_fingerprint"] == run.run_id and meta["image_size"] == 16
    assert not (tmp_path / "ignored").exists()  # figures are the notebook's business
    # the held-out EER: every pair of validation images, scored here and read off sklearn's ROC
    desc, index = extract_descriptors(model, run.inputs.val_set, run.inputs.eval_transform)
    ids = run.inputs.data.manifest.set_index("index").loc[index.numpy(), "identity"].to_numpy()
    x = desc.double().numpy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    a, b = np.triu_indices(len(ids), 1)
    fpr, tpr, _ = roc_curve(ids[a] == ids[b], (x[a] * x[b]).sum(1), drop_intermediate=False)
    assert summary["val/t1/eer"] == pytest.approx(np.interp(0.0, fpr - (1 - tpr), fpr), abs=1e-6)

    pruned = prune.run(run="tiny-taylor", **_prune_params(tmp_path, orl / "cached", "taylor"))
    result = read_json(tmp_path / "taylor.json")
    assert result["params_final"] < result["params_original"]
    assert {"width_rank_correlation", "original", "final", "steps"} <= set(result)
    assert (result["run"], result["criterion"], result["normalize_scores"]) == (
        "tiny-taylor",
        "taylor_activation",
        True,
    )
    assert result["scores_normalised"] is True and result["channels_per_step"] > 0
    layers = pd.read_csv(tmp_path / "taylor_layers.csv", index_col="group")
    assert list(layers.columns) == ["0", "1"] and len(layers) == len(pruned.layers)
    assert list(pd.read_csv(tmp_path / "taylor_history.csv").stage) == [
        "original",
        "pruned",
        "final",
    ]
    reloaded, meta = load_model(tmp_path / "taylor-pruned.pt")
    assert meta["criterion"] == "taylor_activation" and meta["arch"] == "squeezenet"
    _check_pair_scores(tmp_path / "taylor.pt", pruned.history, run.inputs)

    # the no-pruning control: the same steps as the run it names (not its own max_steps), the
    # same training, nothing removed
    control_params = {**_prune_params(tmp_path, orl / "cached", "none"), "max_steps": 3}
    control = prune.run(
        run="tiny-control",
        criterion="none",
        steps_of=str(tmp_path / "taylor.json"),
        **control_params,
    )
    assert read_json(tmp_path / "none.json")["steps"] == result["steps"] == 1
    assert list(control.history.stage) == list(pruned.history.stage)
    assert list(control.history.step) == list(pruned.history.step)
    assert (control.history.params == control.history.params.iloc[0]).all()
    assert (control.history.filters_removed_pct == 0).all()
    assert control.history.descriptor_size.iloc[-1] == pruned.history.descriptor_size.iloc[0]


def test_a_control_needs_the_metrics_of_the_run_it_repeats(tmp_path):
    (tmp_path / "bad.json").write_text('{"run": "x"}')
    for source, problem in (("missing.json", "no such file"), ("bad.json", "no positive 'steps'")):
        with pytest.raises(ParameterError, match=rf"steps_of=.*{source}.*{problem}"):
            prune.run(criterion="none", steps_of=str(tmp_path / source))


def _prune_params(out, data_dir, name):
    return {
        "data_dir": str(data_dir),
        "baseline_path": str(out / "baseline.pt"),
        "model_path": str(out / f"{name}-pruned.pt"),
        "metrics_path": str(out / f"{name}.json"),
        "history_path": str(out / f"{name}_history.csv"),
        "layers_path": str(out / f"{name}_layers.csv"),
        "scores_path": str(out / f"{name}.pt"),
        "checkpoint_dir": str(out / f"ckpt-{name}"),
        "max_steps": 1,
        "score_batches": 1,
        "finetune_epochs": 0,
        "final_finetune_epochs": 0,
    }


def _check_pair_scores(path, history, inputs):
    """The scores file: every pair of every history row, reproducing the row's EER."""
    saved = load_torch(path)
    assert saved["rows"] == [
        {"step": s, "stage": t} for s, t in zip(history.step, history.stage, strict=True)
    ]
    test = inputs.data.manifest[inputs.data.manifest.split == "test"]
    assert saved["identities"] == sorted(test.identity.unique())
    pairs = saved["pairs"]["t1"]
    n = len(test)
    assert saved["scores"]["t1"].shape == (len(history), n * (n - 1) // 2)
    assert torch.equal(pairs["genuine"], pairs["a"] == pairs["b"])
    for k, recorded in enumerate(history["t1/eer"]):
        scores = saved["scores"]["t1"][k].double().numpy()
        assert abs(verification.eer(scores, pairs["genuine"].numpy()) - recorded) < 1e-6


def test_streamed_data_with_workers_trains_like_the_cache(orl, tmp_path):
    cached = train.run(**_train_params(tmp_path / "a", orl / "cached", checkpoint_dir=""))
    streamed = train.run(
        **_train_params(tmp_path / "b", orl / "streamed", checkpoint_dir="", num_workers=1)
    )
    assert streamed.inputs.data.images is None  # read from the image files
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(streamed.history[cols], cached.history[cols])


def test_a_finished_checkpoint_of_other_code_data_or_kernels_is_not_resumed(
    orl, tmp_path, capsys, monkeypatch
):
    """A run is identified by everything it reads: after a code change, a change of the prepared
    data's bytes, or other kernel settings (the pin lifted, another thread count), the old
    checkpoint is set aside with one line naming what changed and training starts over (no
    silent "resume" past the last epoch into the old weights)."""
    import shutil

    from facepruning import artifacts

    data = tmp_path / "data"
    shutil.copytree(orl / "cached", data)
    params = _train_params(tmp_path, data)
    first = train.run(**params)
    first_bytes = Path(params["model_path"]).read_bytes()
    capsys.readouterr()
    real = artifacts.code_fingerprint

    def other_code():
        return "0" * 16

    artifacts.code_fingerprint = other_code
    try:
        again = train.run(**params)
    finally:
        artifacts.code_fingerprint = real
    said = capsys.readouterr().err
    assert "code:" in said and '"0000000000000000"' in said and len(again.history) == 1
    # the code's hash decides resuming only: the same training writes the same model bytes
    assert again.run_id == first.run_id and Path(params["model_path"]).read_bytes() == first_bytes
    # the data: one byte of the image cache changes
    cache = next(p for p in sorted(data.rglob("*.pt")))
    blob = bytearray(cache.read_bytes())
    blob[-1] ^= 1
    cache.write_bytes(bytes(blob))
    capsys.readouterr()
    train.run(**params)
    assert "data_files:" in capsys.readouterr().err
    # the kernels: another thread count than the one the checkpoint was computed with
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    train.run(**params)
    assert "kernels.OMP_NUM_THREADS: " in capsys.readouterr().err


def test_an_interrupted_train_stage_resumes_to_the_same_bytes(orl, tmp_path, monkeypatch):
    """Resumed equals uninterrupted, to the byte, for every file the train stage writes."""
    from facepruning import training

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train.run(**_train_params(whole, orl / "cached", epochs=3))
    real, calls = training.train_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.run(**_train_params(cut, orl / "cached", epochs=3))
    monkeypatch.setattr(training, "train_epoch", real)
    train.run(**_train_params(cut, orl / "cached", epochs=3))
    for name in ("baseline.pt", "train.json", "train_history.csv"):
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name


def test_an_interrupted_prune_stage_resumes_to_the_same_bytes(orl, tmp_path, monkeypatch):
    """Resumed equals uninterrupted, to the byte, for every file the stage writes (the scores
    file included: its strings come back from the checkpoint as other objects)."""
    train.run(**_train_params(tmp_path, orl / "cached"))
    extra = {"max_steps": 3, "finetune_epochs": 1, "target_fraction": None}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out in (whole, cut):
        out.mkdir()
        (out / "baseline.pt").write_bytes((tmp_path / "baseline.pt").read_bytes())
    prune.run(**{**_prune_params(whole, orl / "cached", "taylor"), **extra})
    real = prune.FaceTraining.after_removal

    def interrupted(self, model, step):
        if step == 2:
            raise KeyboardInterrupt
        return real(self, model, step)

    monkeypatch.setattr(prune.FaceTraining, "after_removal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prune.run(**{**_prune_params(cut, orl / "cached", "taylor"), **extra})
    monkeypatch.setattr(prune.FaceTraining, "after_removal", real)
    prune.run(**{**_prune_params(cut, orl / "cached", "taylor"), **extra})
    names = ["taylor-pruned.pt", "taylor.json", "taylor_history.csv", "taylor_layers.csv"]
    for name in [*names, "taylor.pt"]:
        assert (cut / name).read_bytes() == (whole / name).read_bytes(), name


def test_the_data_fingerprint_follows_content_not_where_or_how_it_was_prepared(tmp_path):
    """Streamed images are read where they lie, so their content is fingerprinted when prepared:
    swapping two images and preparing again changes the data's identity. Preparing the same data
    elsewhere, or with other progress output, does not."""
    from facepruning.prepare import copy_orl, prepare_dataset
    from facepruning.stages.common import data_fingerprint, data_identity

    faces = copy_orl(tmp_path / "faces")  # a folder-per-identity tree: ORL's own is re-copied
    common = {"dataset": "folder", "data_root": faces, "resize": 20, "image_size": 16}
    common |= {"test_identities": 10, "cache": False}

    def prepared(out, **extra):
        info = prepare_dataset(out_dir=tmp_path / out, **common, **extra)
        return data_fingerprint(tmp_path / out, info)

    first = prepared("a", progress=False)
    assert prepared("b", progress=True) == first
    described = data_identity(read_json(tmp_path / "a" / "dataset.json"))
    one, other = faces / "s15" / "3.pgm", faces / "s16" / "3.pgm"
    one_bytes, other_bytes = one.read_bytes(), other.read_bytes()
    one.write_bytes(other_bytes)
    other.write_bytes(one_bytes)
    assert prepared("a", progress=False) != first
    # what changed is the images' content hash: manifest, splits and statistics are the same
    after = data_identity(read_json(tmp_path / "a" / "dataset.json"))
    assert after.pop("images_fingerprint") != described.pop("images_fingerprint")
    assert after == described


@pytest.mark.parametrize(
    ("field", "changed", "said"),
    [
        ('"image_size": 16', '"image_size": 12', r"trained with 16 image size.*has 12"),
        ('"num_classes": 30', '"num_classes": 20', r"trained with 30 identities.*has 20"),
        ('"channels": 1', '"channels": 3', r"trained with 1 image channels.*has 3"),
        ('"seed": 0', '"seed": 1', r"trained on other prepared data than .*other"),
    ],
)
def test_pruning_refuses_a_baseline_of_other_data(orl, tmp_path, field, changed, said):
    import shutil

    train.run(**_train_params(tmp_path, orl / "cached"))
    other = tmp_path / "other"
    shutil.copytree(orl / "cached", other)
    info = other / "dataset.json"
    assert field in info.read_text()
    info.write_text(info.read_text().replace(field, changed))
    with pytest.raises(ModelError, match=r"baseline\.pt was " + said):
        prune.run(**_prune_params(tmp_path, other, "taylor"))


def test_a_second_run_on_the_same_outputs_stops_at_once(tmp_path):
    from facepruning.artifacts import claim_outputs

    out = tmp_path / "model.pt"
    first = claim_outputs([out], locks=tmp_path / "locks")
    second = claim_outputs([out], locks=tmp_path / "locks")
    again = pytest.raises(ArtifactError, match=r"model\.pt is being written by another run")
    with first, again, second:
        pass
    with claim_outputs([out], locks=tmp_path / "locks"):  # released: free again
        pass


def test_two_runs_sharing_a_checkpoint_folder_stop_at_once(tmp_path):
    from facepruning.stages.common import claimed

    ckpt = str(tmp_path / "ckpt")
    again = pytest.raises(ArtifactError, match=r"last\.pt is being written by another run")
    with claimed([str(tmp_path / "a.pt")], ckpt), again, claimed([str(tmp_path / "b.pt")], ckpt):
        pass


def test_output_folders_that_cannot_be_written_are_named_before_any_work(tmp_path, monkeypatch):
    from facepruning.artifacts import claim_outputs

    (tmp_path / "file").write_text("in the way")
    blocked = tmp_path / "file" / "model.pt"
    refused = pytest.raises(ArtifactError, match=r"cannot create .*file for model\.pt.*remove what")
    with refused, claim_outputs([blocked], locks=tmp_path / "locks"):
        pass
    monkeypatch.setattr("os.access", lambda path, mode: False)
    refused = pytest.raises(ArtifactError, match=r"is not writable, so model\.pt cannot be written")
    with refused, claim_outputs([tmp_path / "out" / "model.pt"], locks=tmp_path / "locks"):
        pass
