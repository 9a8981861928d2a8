"""The notebook runner behind every DVC stage, and the pipeline's own wiring."""

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from papermill.exceptions import PapermillExecutionError

from facepruning.cli import main, parse_assignments
from facepruning.errors import ParameterError
from facepruning.project import load_params, notebook_parameters, project_root, run_notebook

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("value = 1\nfail = False")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def test_parse_assignments_reads_yaml_values():
    assert parse_assignments(["a=1", "b=[1, 2]", "c=text", "d=null", "e="]) == {
        "a": 1,
        "b": [1, 2],
        "c": "text",
        "d": None,
        "e": "",
    }
    with pytest.raises(ParameterError):
        parse_assignments(["novalue"])


def test_load_params_merges_sections_and_names_missing_ones(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump({"a": {"x": 1, "y": 2}, "b": {"y": 3}}))
    assert load_params(p, ["a", "b"]) == {"x": 1, "y": 3}
    with pytest.raises(ParameterError, match="no section 'c'"):
        load_params(p, ["c"])


def test_unknown_parameter_is_rejected_before_running(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb", "print(value)")
    assert notebook_parameters(nb) == {"value": "1", "fail": "False"}
    with pytest.raises(ParameterError, match="no parameter"):
        run_notebook(nb, tmp_path / "out.ipynb", parameters={"valeu": 2}, cwd=tmp_path)
    assert not (tmp_path / "out.ipynb").exists()


def test_failed_run_keeps_the_previous_output(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb", "assert not fail\nprint('value', value)")
    out = tmp_path / "out.ipynb"
    run_notebook(nb, out, parameters={"value": 7}, cwd=tmp_path)
    first = out.read_text()
    assert "value 7" in first
    assert json.loads(first)["metadata"]["papermill"]["output_path"] == str(out)
    with pytest.raises(PapermillExecutionError):
        run_notebook(nb, out, parameters={"fail": True}, cwd=tmp_path)
    assert out.read_text() == first
    # the partial notebook is kept for inspection, away from the outputs' folder
    assert (tmp_path / "build" / "notebooks" / "out.failed.ipynb").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "n.ipynb", "out.ipynb"]


def test_cli_reports_bad_parameters_cleanly(tmp_path, capsys):
    nb = _notebook(tmp_path / "n.ipynb", "print(value)")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"s": {"nope": 1}}))
    code = main(
        [
            "run-notebook",
            str(nb),
            str(tmp_path / "o.ipynb"),
            "--params",
            str(params),
            "--section",
            "s",
        ]
    )
    assert code == 2
    assert "no parameter" in capsys.readouterr().err


def test_every_stage_passes_only_parameters_its_notebook_declares():
    """params.yaml sections and dvc.yaml --set keys all exist in the notebooks' parameters."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {k: v for entry in pipeline.get("vars", []) for k, v in entry.items()}
    for name, stage in pipeline["stages"].items():
        spec = stage.get("do", stage)
        cmd = spec["cmd"]
        for key, value in variables.items():
            cmd = cmd.replace("${" + key + "}", value)
        words = cmd.split()
        if "run-notebook" not in words:  # e.g. the export stage: no notebook parameters
            continue
        notebook = ROOT / words[words.index("run-notebook") + 1]
        declared = set(notebook_parameters(notebook))
        sections = [words[i + 1] for i, w in enumerate(words) if w == "--section"]
        passed = {k for s in sections for k in params[s]}
        start = words.index("--set") + 1 if "--set" in words else len(words)
        passed |= {w.split("=")[0] for w in words[start:] if "=" in w}
        assert passed <= declared, f"stage {name}: {sorted(passed - declared)} undeclared"
        assert set(spec["params"]) == set(sections), f"stage {name} tracks other params"


def test_project_root_is_found_from_inside(tmp_path):
    assert project_root(ROOT / "notebooks") == ROOT
    with pytest.raises(FileNotFoundError, match="dvc.yaml"):
        project_root(tmp_path)


def test_source_notebooks_have_no_outputs_and_a_parameters_cell():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), path.name
        assert any("parameters" in c["metadata"].get("tags", []) for c in code), path.name


def test_write_json_turns_nan_into_null_and_numpy_into_numbers(tmp_path):
    import numpy as np
    import torch

    from facepruning.artifacts import read_json, write_json

    write_json(
        tmp_path / "m.json",
        {
            "a": np.float64("nan"),
            "b": np.int64(3),
            "c": float("nan"),
            "d": torch.tensor([1.5]),
            "e": np.float32(0.25),
        },
    )
    assert read_json(tmp_path / "m.json") == {"a": None, "b": 3, "c": None, "d": [1.5], "e": 0.25}
    assert "NaN" not in (tmp_path / "m.json").read_text()


def test_executed_notebooks_keep_no_widget_state_and_no_scratch_path(tmp_path):
    from facepruning.project import tidy_executed

    nb = _notebook(tmp_path / "n.ipynb", "print(value)")
    data = json.loads(nb.read_text())
    data["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    data["metadata"]["papermill"] = {"output_path": str(tmp_path / "build" / "n.running.ipynb")}
    nb.write_text(json.dumps(data))
    tidy_executed(nb, "reports/n.ipynb")
    cleaned = json.loads(nb.read_text())
    assert "widgets" not in cleaned["metadata"]
    assert cleaned["metadata"]["papermill"]["output_path"] == "reports/n.ipynb"
    assert cleaned["cells"] == data["cells"]


def test_a_report_shows_its_runs_parameters_and_no_regression_check(tmp_path):
    nb = _notebook(tmp_path / "n.ipynb", "print(value * 2)")
    data = nbformat.read(nb, as_version=4)
    check = nbformat.v4.new_code_cell("print('reference check: skipped')")
    check.metadata["tags"] = ["regression-check"]
    data.cells.append(check)
    nbformat.write(data, nb)
    out = tmp_path / "reports" / "n.ipynb"
    run_notebook(nb, out, parameters={"value": 7}, cwd=tmp_path, run_parameters="value = 7")
    cells = nbformat.read(out, as_version=4).cells
    assert [c.source for c in cells] == ["value = 7", "print(value * 2)"]
    assert cells[1].outputs[0]["text"] == "14\n"
    # without run_parameters papermill's injected cell stays; the check goes either way
    run_notebook(nb, out, parameters={"value": 7}, cwd=tmp_path)
    cells = nbformat.read(out, as_version=4).cells
    assert len(cells) == 3 and "injected-parameters" in cells[1].metadata.tags


def test_the_pipelines_reports_show_params_yaml_values_not_the_test_defaults(tmp_path):
    import dataclasses

    from facepruning import parameters

    given = {"max_steps": 15, "model_path": "models/pruned/x.pt"}
    values = dataclasses.asdict(parameters.parse("prune", given))
    cell = parameters.notebook_cell("prune", values)
    assert "max_steps: int = 15  #" in cell and 'model_path: str = "models/pruned/x.pt"' in cell
    assert "build/nbval/models/pruned" not in cell
    assert "max_steps: int = 3  #" in parameters.notebook_cell("prune")


def test_a_rerun_with_the_same_inputs_writes_the_same_report_bytes(tmp_path):
    # papermill records start and end times, durations and a random id for the injected cell:
    # none of them may reach the report, or every rerun would change it
    nb = _notebook(tmp_path / "n.ipynb", "print(value * 2)")
    out = tmp_path / "reports" / "n.ipynb"
    run_notebook(nb, out, parameters={"value": 7}, cwd=tmp_path)
    first = out.read_bytes()
    run_notebook(nb, out, parameters={"value": 7}, cwd=tmp_path)
    assert out.read_bytes() == first
    assert b"start_time" not in first and b"duration" not in first
