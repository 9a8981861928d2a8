"""One declaration per parameter: the notebooks' cells, params files, CLI and papermill all follow
:mod:`facepruning.parameters`, and bad values get one line naming the parameter and the fix."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import papermill
import pytest
import yaml

from facepruning import cli, parameters
from facepruning.errors import ParameterError
from facepruning.project import project_root, run_notebook

ROOT = project_root(__file__)
NOTEBOOKS = {
    "prepare": "01_data_preparation.ipynb",
    "train": "02_baseline_training.ipynb",
    "prune": "03_taylor_pruning.ipynb",
    "analysis": "04_analysis.ipynb",
}


def _parameters_cell(notebook: str) -> str:
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{notebook}: expected one cell tagged parameters"
    return "".join(tagged[0]["source"])


@pytest.mark.parametrize("stage", list(NOTEBOOKS))
def test_notebook_parameters_cell_is_the_declaration(stage):
    assert _parameters_cell(NOTEBOOKS[stage]) == parameters.notebook_cell(stage)


@pytest.mark.parametrize("stage", list(NOTEBOOKS))
def test_papermill_sees_every_parameter_with_its_type_and_meaning(stage):
    inspected = papermill.inspect_notebook(str(ROOT / "notebooks" / NOTEBOOKS[stage]))
    declared = {f.name: f for f in parameters.declared(parameters.STAGES[stage])}
    assert list(inspected) == list(declared)
    for name, info in inspected.items():
        assert info["inferred_type_name"] not in ("None", ""), name
        assert info["help"] == declared[name].metadata["meaning"], name


@pytest.mark.parametrize("params_file", ["params.yaml", "params-paper.yaml"])
@pytest.mark.parametrize("stage", list(NOTEBOOKS))
def test_params_files_feed_every_stage(params_file, stage):
    sections = yaml.safe_load((ROOT / params_file).read_text())
    parsed = parameters.parse(stage, sections[stage])
    for name, value in sections[stage].items():
        assert getattr(parsed, name) == value, name


def test_defaults_parse_and_dataclass_defaults_equal_declared_defaults():
    for stage, cls in parameters.STAGES.items():
        assert parameters.parse(stage, {}) == cls()


@pytest.mark.parametrize(
    ("stage", "given", "message"),
    [
        (
            "train",
            {"epochs": "three"},
            r"epochs='three' is not a whole number; give e\.g\. epochs=3",
        ),
        ("prune", {"filters_per_step": "abc"}, r"filters_per_step='abc' is not a number"),
        ("train", {"epochs": True}, "epochs=True is not a whole number"),
        ("train", {"arch": "vgg16"}, "arch='vgg16' is not one of squeezenet, mobilenet_v2"),
        ("train", {"lr_levels": [0.1, "x"]}, r"lr_levels=\[0.1, 'x'\]"),
        ("prepare", {"test_identitie": 5}, "did you mean 'test_identities'"),
        ("prepare", {"on_error": "ignore"}, "is not one of raise, skip"),
        ("prepare", {"image_size": 90, "resize": 73}, "image_size=90 is larger than resize=73"),
        ("prune", {"filters_per_step": 2.5}, r"filters_per_step=2.5: give a whole count"),
        ("prune", {"max_steps": 0}, "max_steps=0: must be at least 1"),
    ],
)
def test_bad_values_are_refused_with_one_line(stage, given, message):
    with pytest.raises(ParameterError, match=message) as err:
        parameters.parse(stage, given)
    assert "\n" not in str(err.value)


def test_ints_are_accepted_where_floats_are_declared():
    assert parameters.parse("prune", {"filters_per_step": 8}).filters_per_step == 8.0
    assert parameters.parse("train", {"pixel_mean": [1, 2, 3]}).pixel_mean == [1.0, 2.0, 3.0]


def test_run_identity_leaves_out_paths_and_workers():
    identity = parameters.run_identity(parameters.parse("train", {"num_workers": 4}))
    assert "num_workers" not in identity and "model_path" not in identity
    assert identity["epochs"] == 3 and identity["arch"] == "squeezenet"
    assert "run" not in parameters.run_identity(parameters.PruneParameters())


def test_from_notebook_refuses_names_papermill_injected_but_nobody_declared():
    namespace = {
        **dataclasses.asdict(parameters.PrepareParameters()),
        "In": [],
        "Path": dataclasses.dataclass,  # imports and callables are not parameters
        "json": json,
        "test_identitie": 5,
    }
    with pytest.raises(ParameterError, match="did you mean 'test_identities'"):
        parameters.from_notebook("prepare", namespace)
    del namespace["test_identitie"]
    namespace["seed"] = 3
    assert parameters.from_notebook("prepare", namespace).seed == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--set", "epochs=three"], "epochs='three' is not a whole number"),
        (["prune", "--set", "filters_per_step=abc"], "filters_per_step='abc' is not a number"),
        (["prepare", "--set", "on_error=maybe"], "on_error='maybe' is not one of raise, skip"),
    ],
)
def test_cli_refuses_wrong_types_in_one_line(argv, message, capsys):
    assert cli.main([*argv, "--params", str(ROOT / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_run_notebook_validates_the_section_types(tmp_path, capsys):
    out = tmp_path / "out.ipynb"
    argv = ["run-notebook", str(ROOT / "notebooks" / NOTEBOOKS["train"]), str(out)]
    argv += ["--params", str(ROOT / "params.yaml"), "--section", "train", "--set", "epochs=x"]
    assert cli.main(argv) == 2
    assert "epochs='x' is not a whole number" in capsys.readouterr().err
    assert not out.exists()


def test_yaml_syntax_error_is_one_line_naming_file_and_line(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epochs: 3\n  lr_levels: [0.1, 0.01\n")
    assert cli.main(["train", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(params) in err and "line" in err and len(err.splitlines()) == 1
    assert cli.main(["train", "--params", str(tmp_path / "missing.yaml")]) == 2
    assert "no such parameters file" in capsys.readouterr().err


def _help(command: str, cwd) -> str:
    return subprocess.run(
        [sys.executable, "-m", "facepruning", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout


def test_cli_help_lists_every_parameter_with_the_default_a_plain_run_uses(tmp_path):
    help_text = _help("prune", ROOT)
    for f in dataclasses.fields(parameters.PruneParameters):
        assert f"  {f.name} (" in help_text, f.name
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["prune"]
    assert f"max_steps (int, default {section['max_steps']})" in help_text  # params.yaml's
    assert "model_path (str, default 'models/pruned/squeezenet-taylor_activation.pt')" in help_text
    assert "build/nbval" not in help_text
    elsewhere = _help("prepare", tmp_path)  # no params.yaml: the declaration, pipeline paths
    assert "out_dir (str, default 'data/processed')" in elsewhere
    assert "test_identities (int, default 10)" in elsewhere and "no params.yaml" in elsewhere


def test_only_help_reads_params_yaml_for_its_epilog(monkeypatch):
    read = []
    monkeypatch.setattr(cli, "_parameters_help", lambda command: read.append(command) or "")
    cli.build_parser().parse_args(["readme"])
    assert read == []  # building the parser and parsing read nothing
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["prune", "--help"])
    assert read == ["prune"]


def test_command_line_paths_follow_the_runs_own_names():
    assert parameters.command_line_paths("prepare", {"out_dir": "x"}) == {
        "raw_dir": "data/raw",
        "figures_dir": "figures/01_data_preparation",
    }
    train = parameters.command_line_paths("train", {"arch": "resnet50"})
    assert train["model_path"] == "models/resnet50/baseline.pt"
    assert train["checkpoint_dir"] == "checkpoints/train/resnet50"
    # a run named after another network keeps its name; the baseline follows the arch
    prune = parameters.command_line_paths("prune", {"arch": "resnet50", "run": "squeezenet-x"})
    assert prune["model_path"] == "models/pruned/squeezenet-x.pt"
    assert prune["baseline_path"] == "models/resnet50/baseline.pt"
    assert "run" not in prune
    control = parameters.command_line_paths("prune", {"arch": "mobilenet_v2", "criterion": "none"})
    assert control["run"] == "mobilenet_v2-none"
    assert control["scores_path"] == "scores/mobilenet_v2-none.pt"


def test_a_plain_prepare_writes_to_data_processed(tmp_path, monkeypatch):
    from facepruning.stages import prepare

    seen = {}
    monkeypatch.setattr(prepare, "run", lambda p: seen.setdefault("p", p))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["prepare", "--params", str(ROOT / "params.yaml")]) == 0
    assert seen["p"].out_dir == "data/processed" and seen["p"].raw_dir == "data/raw"


def test_papermill_misspelt_parameter_fails_the_notebook(tmp_path):
    # papermill itself only warns about an unknown -p name; the notebook's check refuses it
    notebook = ROOT / "notebooks" / NOTEBOOKS["prepare"]
    with pytest.raises(papermill.PapermillExecutionError, match="test_identitie"):
        papermill.execute_notebook(
            str(notebook),
            str(tmp_path / "out.ipynb"),
            parameters={"test_identitie": 5},
            cwd=str(ROOT),
            kernel_name="python3",
            progress_bar=False,
            log_output=False,
        )


def test_run_notebook_turns_a_notebook_parameter_error_into_one_line(tmp_path):
    notebook = ROOT / "notebooks" / NOTEBOOKS["prepare"]
    with pytest.raises(ParameterError, match="seed='x' is not a whole number"):
        # run_notebook refuses undeclared names itself; the type check runs in the kernel
        run_notebook(notebook, tmp_path / "out.ipynb", parameters={"seed": "x"}, cwd=ROOT)
