"""The prepare stage (notebook 01, ``python -m facepruning prepare``): the data set copied or
scanned, split by identity, cropped and cached under ``out_dir``."""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import parameters
from ..parameters import PrepareParameters
from ..prepare import prepare_dataset

__all__ = ["run"]


def run(params: PrepareParameters | None = None, /, **given: Any) -> dict[str, Any]:
    """Prepare the data set (notebook 01's work): returns what dataset.json records.

    Parameters: :class:`~facepruning.parameters.PrepareParameters`, as a dataclass or by name.
    """
    p = parameters.resolve("prepare", params, given)
    return prepare_dataset(
        **{
            name: value
            for name, value in dataclasses.asdict(p).items()
            if name != "figures_dir"  # figures are the notebook's
        }
    )
