"""Figures are saved byte for byte reproducibly, and the grid of pruning curves draws every case."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt

from facepruning import plots


def _history() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for arch in ("squeezenet", "resnet50"):
        t5 = 0.10 if arch == "squeezenet" else np.nan  # t5/eer: not measured for resnet50
        rows.append((arch, 0, "original", 0.0, 1_000_000, 0.20, t5))
        for step in (1, 2, 3):
            for stage in ("pruned", "finetuned"):
                eer = 0.2 + rng.normal(0, 0.02)
                rows.append((arch, step, stage, 10.0 * step, 1_000_000 - 1e5 * step, eer, np.nan))
        rows.append((arch, 3, "final", 30.0, 700_000, 0.21, np.nan))
    cols = ["arch", "step", "stage", "filters_removed_pct", "params", "t1/eer", "t5/eer"]
    return pd.DataFrame(rows, columns=cols)


def _grid() -> plt.Figure:
    return plots.metric_grid(
        _history(),
        metrics=["t1/eer", "t5/eer", "t1/eer"],
        x=["filters_removed_pct", "filters_removed_pct", "params"],
        x_scale={"params": 1e6},
        xlabel={"params": "parameters (millions)"},
        band={"t1/eer": 0.02},
        invert_x=True,
        title="grid",
    )


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_the_same_figure_saved_twice_gives_the_same_bytes(tmp_path, suffix):
    fig = _grid()
    first, second = tmp_path / f"a{suffix}", tmp_path / "sub" / f"b{suffix}"
    plots.save_figure(fig, first)
    plots.save_figure(fig, second)
    plt.close(fig)
    assert first.read_bytes() == second.read_bytes()
    assert b"matplotlib version" not in first.read_bytes().lower()  # no version string
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_rebuilt_figure_gives_the_same_png(tmp_path):
    for name in ("a.png", "b.png"):
        fig = _grid()
        plots.save_figure(fig, tmp_path / name)
        plt.close(fig)
    data = (tmp_path / "a.png").read_bytes()
    assert data.startswith(b"\x89PNG") and data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data


def test_unknown_suffix_is_saved_as_png(tmp_path):
    fig = _grid()
    plots.save_figure(fig, tmp_path / "figure")
    plt.close(fig)
    assert (tmp_path / "figure").read_bytes().startswith(b"\x89PNG")


def test_metric_grid_layout():
    fig = _grid()
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["resnet50", "squeezenet"]
    assert axes[1][0].texts[0].get_text() == "not measured"
    assert not axes[1][1].texts  # squeezenet's t5/eer: the original point and its line
    assert axes[2][0].get_xlabel() == "parameters (millions)"
    assert axes[2][0].xaxis_inverted() and axes[0][0].xaxis_inverted()
    assert len(fig.legends) == 1 and fig.get_suptitle() == "grid"
    plt.close(fig)
    with pytest.raises(ValueError, match="2 x columns for 1 metrics"):
        plots.metric_grid(_history(), metrics=["t1/eer"], x=["params", "macs"])
