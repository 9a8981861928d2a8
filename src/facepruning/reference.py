"""Regression bounds for the notebooks' default (CI) runs: key numbers against a recorded reference.

nbval runs every notebook with its declared defaults (small, CPU-sized). Without a reference it
catches crashes only: an EER that doubles still passes. Each notebook therefore ends with
:func:`check`, which compares a few key numbers (EERs, accuracies, parameter counts) with
``notebooks/reference.json``, recorded from a run of the same defaults, each with its own
tolerance wide enough for another CPU's floating-point noise and narrow enough for a real
regression. Runs with other parameters (the pipeline's, a user's) print their numbers and skip the
comparison, since the reference says nothing about them.

Record anew after a deliberate change of results::

    FACEPRUNING_RECORD_REFERENCE=1 make test   # then review and commit notebooks/reference.json
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import artifacts, parameters
from .project import project_root

__all__ = ["REFERENCE_FILE", "RECORD_VARIABLE", "Bound", "check"]

REFERENCE_FILE = Path("notebooks") / "reference.json"
RECORD_VARIABLE = "FACEPRUNING_RECORD_REFERENCE"


@dataclasses.dataclass(frozen=True)
class Bound:
    """A key number and how far a run may stray from it: ``abs`` plus ``rel`` times the value."""

    value: float
    abs: float = 0.0
    rel: float = 0.0

    @property
    def slack(self) -> float:
        return self.abs + self.rel * abs(self.value)

    def admits(self, value: float) -> bool:
        return math.isfinite(value) and abs(value - self.value) <= self.slack


def _path() -> Path:
    return project_root() / REFERENCE_FILE


def _is_reference_run(stage: str, params: Any) -> bool:
    defaults = parameters.STAGES[stage]()
    return dataclasses.asdict(params) == dataclasses.asdict(defaults)


def check(
    stage: str,
    params: Any,
    values: Mapping[str, float],
    *,
    tolerances: Mapping[str, tuple[float, float]],
) -> str:
    """Compare ``values`` with the recorded reference of ``stage``; raise AssertionError on a miss.

    ``tolerances`` maps each key to ``(absolute, relative)`` slack; they are stored with the
    reference when it is recorded. Returns a one-line verdict for the notebook to print.
    """
    if not _is_reference_run(stage, params):
        return "reference check: skipped (only the notebook's default parameters have one)"
    path = _path()
    stored = artifacts.read_json(path) if path.is_file() else {}
    if os.environ.get(RECORD_VARIABLE):
        stored[stage] = {
            key: dataclasses.asdict(Bound(float(values[key]), *tolerances[key])) for key in values
        }
        artifacts.write_json(path, dict(sorted(stored.items())))
        return f"reference check: recorded {len(values)} numbers to {REFERENCE_FILE}"
    if stage not in stored:
        raise AssertionError(
            f"{REFERENCE_FILE} has no reference for the {stage} stage: record one with "
            f"{RECORD_VARIABLE}=1 make test"
        )
    bounds = {key: Bound(**b) for key, b in stored[stage].items()}
    missed = [
        f"{key} = {float(values[key]):.4g}, reference {b.value:.4g} +- {b.slack:.2g}"
        for key, b in bounds.items()
        if not b.admits(float(values[key]))
    ]
    if missed:
        raise AssertionError(
            f"{stage} regressed against {REFERENCE_FILE}: " + "; ".join(missed) + ". If the "
            f"change is intended, record anew with {RECORD_VARIABLE}=1 make test"
        )
    return f"reference check: {len(bounds)} key numbers within their recorded bounds"
