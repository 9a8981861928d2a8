"""Shared test set-up: every test leaves the process environment as it found it."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _environment_restored():
    """``cli.main`` pins the kernels in-process (environment variables and torch's thread count);
    without this, whether later tests and the notebook kernels nbval starts run pinned would
    depend on which tests ran before them."""
    saved, threads = dict(os.environ), torch.get_num_threads()
    yield
    os.environ.clear()
    os.environ.update(saved)
    torch.set_num_threads(threads)
