"""Progress bars that help where someone watches and vanish where nobody does.

In a terminal or in JupyterLab, :func:`progress_bar` is ``tqdm.auto.tqdm``: a live text bar or a
widget. An executed report (a notebook run by papermill for the pipeline) would keep each widget
frozen at its first state, "0% 0/8", which tells a reader nothing; :func:`~facepruning.project.
run_notebook` therefore sets :data:`QUIET_VARIABLE` for the kernel it starts, and bars are
disabled there.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["QUIET_VARIABLE", "progress_bar"]

QUIET_VARIABLE = "FACEPRUNING_NO_PROGRESS"


def progress_bar(iterable: Any = None, *, disable: bool = False, **kwargs: Any):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, disabled when :data:`QUIET_VARIABLE` is set."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable or bool(os.environ.get(QUIET_VARIABLE)), **kwargs)
