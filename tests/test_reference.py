"""The notebooks' regression bounds: a recorded reference catches a regression, records anew on
request, and leaves runs with other parameters alone."""

from __future__ import annotations

import pytest

from facepruning import parameters, reference
from facepruning.artifacts import read_json

TOLERANCES = {"t1/eer": (0.05, 0.0), "params": (0.0, 0.02)}


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(reference.RECORD_VARIABLE, raising=False)  # also under a recording run
    return tmp_path


def test_records_then_admits_values_within_their_bounds(project, monkeypatch):
    defaults = parameters.TrainParameters()
    monkeypatch.setenv(reference.RECORD_VARIABLE, "1")
    values = {"t1/eer": 0.30, "params": 1000}
    assert "recorded 2" in reference.check("train", defaults, values, tolerances=TOLERANCES)
    stored = read_json(project / reference.REFERENCE_FILE)
    assert stored["train"]["t1/eer"] == {"value": 0.30, "abs": 0.05, "rel": 0.0}
    monkeypatch.delenv(reference.RECORD_VARIABLE)
    ok = {"t1/eer": 0.34, "params": 1019}
    assert "within" in reference.check("train", defaults, ok, tolerances=TOLERANCES)


@pytest.mark.parametrize(
    "values", [{"t1/eer": 0.36, "params": 1000}, {"t1/eer": 0.3, "params": 1021}]
)
def test_a_regression_fails_naming_the_number(project, monkeypatch, values):
    defaults = parameters.TrainParameters()
    monkeypatch.setenv(reference.RECORD_VARIABLE, "1")
    reference.check("train", defaults, {"t1/eer": 0.30, "params": 1000}, tolerances=TOLERANCES)
    monkeypatch.delenv(reference.RECORD_VARIABLE)
    with pytest.raises(AssertionError, match="train regressed"):
        reference.check("train", defaults, values, tolerances=TOLERANCES)


def test_other_parameters_skip_and_a_missing_reference_fails(project):
    pipeline = parameters.parse("train", {"epochs": 40})
    assert "skipped" in reference.check("train", pipeline, {"t1/eer": 0.9}, tolerances=TOLERANCES)
    with pytest.raises(AssertionError, match="no reference for the train stage"):
        reference.check(
            "train", parameters.TrainParameters(), {"t1/eer": 0.3}, tolerances=TOLERANCES
        )
