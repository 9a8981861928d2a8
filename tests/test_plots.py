"""Figures are saved byte for byte reproducibly, each stage's figures draw every case, and run
and criterion names come from the caller."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import pyplot as plt
from matplotlib.colors import to_hex
from matplotlib.patches import Rectangle

from facepruning.plots import analysis, pruning, style, training


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


def _intervals() -> pd.DataFrame:
    """analysis.interval_table-like rows: a run, its control (nothing removed), two metrics."""
    rows = []
    for run, slope in (("sq-taylor", 0.001), ("sq-control", 0.0)):
        for step in range(4):
            stages = ["original"] if step == 0 else ["pruned", "finetuned"]
            stages += ["final"] if step == 3 else []
            for stage in stages:
                pct = 0.0 if run == "sq-control" else 10.0 * step
                for metric in ("t1/eer", "t1/tar@far=0.01"):
                    e = 0.2 + slope * pct * (2 if stage == "pruned" else 1)
                    params = 1e6 - 1e5 * step
                    removed = 100 * (1 - params / 1e6)
                    rows.append(
                        (run, step, stage, pct, params, removed, metric, e, e - 0.02, e + 0.02)
                    )
    cols = [
        "run",
        "step",
        "stage",
        "filters_removed_pct",
        "params",
        "params_removed_pct",
        "metric",
        "estimate",
        "low",
        "high",
    ]
    return pd.DataFrame(rows, columns=cols)


def _figure() -> plt.Figure:
    """A figure with bands, error bars, a shared legend and a title (notebook 04's curves)."""
    return analysis.interval_curves(
        _intervals(),
        metrics=["t1/eer", "t1/tar@far=0.01"],
        runs={"squeezenet": "sq-taylor"},
        controls={"squeezenet": "sq-control"},
        tolerance={"t1/eer": 0.02},
        title="curves",
    )


@pytest.mark.parametrize("suffix", [".png", ".pdf", ".svg"])
def test_the_same_figure_saved_twice_gives_the_same_bytes(tmp_path, suffix):
    fig = _figure()
    first, second = tmp_path / f"a{suffix}", tmp_path / "sub" / f"b{suffix}"
    style.save_figure(fig, first)
    style.save_figure(fig, second)
    plt.close(fig)
    assert first.read_bytes() == second.read_bytes()
    assert b"matplotlib version" not in first.read_bytes().lower()  # no version string
    assert not list(tmp_path.glob("**/*.partial"))


def test_a_rebuilt_figure_gives_the_same_png(tmp_path):
    for name in ("a.png", "b.png"):
        fig = _figure()
        style.save_figure(fig, tmp_path / name)
        plt.close(fig)
    data = (tmp_path / "a.png").read_bytes()
    assert data.startswith(b"\x89PNG") and data == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in data


def test_unknown_suffix_is_saved_as_png(tmp_path):
    fig = _figure()
    style.save_figure(fig, tmp_path / "figure")
    plt.close(fig)
    assert (tmp_path / "figure").read_bytes().startswith(b"\x89PNG")


def test_style_and_the_package_import_no_figure_module_and_set_no_theme():
    # a stage depends on style.py and its own figure module only (dvc.yaml), and the README
    # generator reads the network names from style without loading pyplot or seaborn
    code = (
        "import sys, matplotlib; import facepruning.plots.style; "
        "loaded = [m for m in ('matplotlib.pyplot', 'seaborn', 'facepruning.plots.training', "
        "'facepruning.plots.pruning', 'facepruning.plots.analysis') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# figures with intervals
# --------------------------------------------------------------------------------------------
def test_interval_curves_draw_bands_control_and_tolerance():
    fig = analysis.interval_curves(
        _intervals(),
        metrics=["t1/eer", "t1/tar@far=0.01"],
        runs={"squeezenet": "sq-taylor", "missing": "nope"},
        controls={"squeezenet": "sq-control"},
        tolerance={"t1/eer": 0.02},
    )
    axes = np.array(fig.axes).reshape(2, 2)
    eer = axes[0][0]
    labels = eer.get_legend_handles_labels()[1]
    for label in ("pruned", "pruned + fine-tuned", "control (nothing removed)", "original network"):
        assert label in labels
    assert "tolerance (+0.02)" in labels
    assert "tolerance (+0.02)" not in axes[1][0].get_legend_handles_labels()[1]  # TAR: no band
    lines = {line.get_label(): line for line in eer.get_lines()}
    pruned, tuned = lines["pruned"], lines["pruned + fine-tuned"]
    assert pruned.get_linestyle() == "-" and pruned.get_marker() == "o"
    assert tuned.get_linestyle() == "--" and tuned.get_marker() == "s"
    assert list(pruned.get_xdata()) == [0.0, 10.0, 20.0, 30.0]
    # the control is drawn at the pruned run's share of each step (it removes nothing itself)
    assert list(lines["control (nothing removed)"].get_xdata()) == [0.0, 10.0, 20.0, 30.0]
    # one shaded band per stage curve of the run (the control has error bars instead)
    from matplotlib.collections import PolyCollection

    fills = [c for c in eer.collections if isinstance(c, PolyCollection)]
    assert len(fills) == 2
    assert axes[0][1].texts[0].get_text() == "not measured"
    assert axes[0][0].get_ylabel() == "EER, 1-image templates"
    assert axes[1][0].get_xlabel() == "filters removed (%)"
    assert len(fig.legends) == 1
    plt.close(fig)


def test_palette_is_colour_blind_safe_and_labels_readable():
    fig = analysis.interval_curves(_intervals(), metrics=["t1/eer"], runs={"sq": "sq-taylor"})
    ax = fig.axes[0]
    colors = {line.get_color() for line in ax.get_lines() if line.get_label().startswith("pruned")}
    assert colors == {style.OKABE_ITO[0]}
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 8
    plt.close(fig)


def test_criteria_curves_and_forest():
    table = _intervals()
    runs = {"taylor_activation": "sq-taylor", "none": "sq-control"}
    names = {"taylor_activation": "Taylor (activations)", "none": "control (nothing removed)"}
    kw = {"metric": "t1/eer", "runs": runs, "reference": "taylor_activation"}
    fig = analysis.criteria_curves(table, **kw, labels=names)
    axes = np.asarray(fig.axes).reshape(2, 2)  # rows: filters, parameters; a column per run
    assert [ax.get_title() for ax in axes[0]] == list(names.values())
    assert [ax.get_xlabel() for ax in axes[:, 0]] == [
        "filters removed (%)",
        "parameters removed (%)",
    ]
    assert all(len(ax.collections) == 1 for ax in axes.flat)  # every curve its own band
    # the control's column shows Taylor thin and black behind it; Taylor's own column does not
    assert [line.get_label() for line in axes[0][1].get_lines()] == list(names.values())
    assert [line.get_label() for line in axes[0][0].get_lines()] == [names["taylor_activation"]]
    # the bottom row counts parameters: step k removes 1e5 of 1e6 parameters, 10% each
    taylor = axes[1][0].get_lines()[0]
    assert list(taylor.get_xdata()) == pytest.approx([0.0, 10.0, 20.0, 30.0])
    plt.close(fig)
    fig = analysis.criteria_curves(table, **kw)  # without labels, a criterion is its key
    assert [line.get_label() for line in fig.axes[1].get_lines()] == list(runs)
    plt.close(fig)
    frame = pd.DataFrame(
        {"name": ["a", "b"], "estimate": [0.1, -0.1], "low": [0.05, -0.2], "high": [0.2, 0.0]}
    )
    fig = analysis.interval_forest(frame, label="name", xlabel="difference")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_xlabel() == "difference" and ax.get_lines()[-1].get_xdata()[0] == 0.0
    plt.close(fig)


def test_null_comparison_marks_runs_inside_and_outside():
    frame = pd.DataFrame(
        {"run": ["taylor", "random"], "rho": [0.9, 0.1], "low": [-0.3, -0.3], "high": [0.4, 0.4]}
    )
    frame["run"] = ["squeezenet-taylor_activation_unnormalized", "squeezenet-random"]
    names = {"taylor_activation_unnormalized": "Taylor (activations), unnormalised"}
    frame["null_uniform"] = [[-0.3, 0.4], [-0.3, 0.4]]
    frame["null_normalised"] = [[0.5, 0.95], None]  # the random run is never normalised
    fig = analysis.null_comparison(frame, labels=names)
    ax = fig.axes[0]
    bands = {c.get_label(): c for c in ax.collections}
    assert len(bands["random scores, normalised per layer"].get_segments()) == 2
    assert bands["uniform random scores"].get_segments()[0][0][0] == -0.3
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["observed, outside"].get_xdata()) == [0.9]
    assert list(lines["observed, inside"].get_xdata()) == [0.1]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "SqueezeNet, Taylor (activations), unnormalised",
        "SqueezeNet, random",
    ]
    legend = ax.get_legend()
    assert "the verdict's null (95%)" in [t.get_text() for t in legend.get_texts()]
    # the legend sits below the axes, where it cannot cover a band
    fig.canvas.draw()
    box = legend.get_window_extent().transformed(ax.transAxes.inverted())
    assert box.y1 < 0
    plt.close(fig)


def test_layer_bars_and_descriptor_sizes():
    layers = pd.DataFrame(
        {0: [64, 128, 256], 1: [60, 100, 150], 2: [50, 90, 80]},
        index=["backbone.conv1", "backbone.layer1.0.conv1", "backbone.layer4.0.conv3"],
    )
    fig = analysis.layer_bars({"resnet50": layers})
    ax = fig.axes[0]
    assert [c.get_label() for c in ax.containers] == [
        "start (step 0)",
        "after step 1",
        "after step 2",
    ]
    assert [b.get_height() for b in ax.containers[-1]] == [50, 90, 80]
    # a linear axis that names every group, in the network's own colour
    assert ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "conv1",
        "layer1.0.conv1",
        "layer4.0.conv3",
    ]
    last = ax.containers[-1][0].get_facecolor()
    assert to_hex(last) == style.COLOR_OF["resnet50"].lower()
    plt.close(fig)
    # one panel per network's run: each in its network's colour, not the shared criterion's
    runs = {"squeezenet-taylor_activation": layers, "resnet50-taylor_activation": layers}
    fig = analysis.layer_bars(runs)
    shown = [to_hex(ax.containers[-1][0].get_facecolor()) for ax in fig.axes]
    assert shown == [style.COLOR_OF["squeezenet"].lower(), style.COLOR_OF["resnet50"].lower()]
    plt.close(fig)
    hist = _history().assign(descriptor_size=lambda f: 512 - 10 * f["step"])
    fig = analysis.descriptor_sizes(hist, col_order=["squeezenet", "resnet50"])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["SqueezeNet", "ResNet50"]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == [512, 502, 492, 482]
    plt.close(fig)


def test_training_curves_loss_axis_is_logarithmic():
    hist = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [3.0, 1.0, 0.3],
            "val_loss": [3.1, 1.5, 1.0],
            "train_acc": [0.1, 0.5, 0.9],
            "val_acc": [0.1, 0.4, 0.6],
            "lr": [0.01, 0.01, 0.001],
        }
    )
    fig = training.training_curves(hist)
    assert fig.axes[0].get_yscale() == "log" and "log" in fig.axes[0].get_ylabel()
    plt.close(fig)


def test_taylor_check_scatters_prediction_against_measurement_and_sorts_scores():
    rng = np.random.default_rng(0)
    predicted = rng.normal(0, 1e-3, 12)
    measured = 0.5 * predicted + rng.normal(0, 1e-4, 12)
    scores = rng.random(40)
    group, criterion = "layer4.0.conv3", "L1 norm"
    fig = pruning.taylor_check(
        predicted, measured, scores, group=group, criterion=criterion, uses="the weights alone"
    )
    left, right = fig.axes
    np.testing.assert_array_equal(left.collections[0].get_offsets(), np.c_[predicted, measured])
    (diagonal,) = left.get_lines()
    assert diagonal.get_linestyle() == ":" and diagonal.get_color() == "grey"
    x, y = diagonal.get_data()
    assert x[0] == y[0] < 0 < x[1] == y[1] >= np.abs(np.r_[predicted, measured]).max()
    assert left.get_title() == "layer4.0.conv3: Taylor estimate vs\none channel zeroed at a time"
    np.testing.assert_array_equal(right.get_lines()[0].get_ydata(), np.sort(scores))
    assert right.get_ylabel() == "L1 norm score"
    assert right.get_title() == "L1 norm, from the weights alone:\nthe left end goes first"
    fig.canvas.draw()
    boxes = [ax.title.get_window_extent() for ax in (left, right)]
    assert boxes[0].x1 < boxes[1].x0  # the two titles do not run into each other
    plt.close(fig)


def test_label_names_networks_stages_metrics_and_runs_with_the_callers_labels():
    assert style.label("mobilenet_v2") == "MobileNetV2"
    assert style.label("finetuned") == "pruned + fine-tuned"
    assert style.label("resnet50", "t1/eer") == "ResNet50, EER, 1-image templates"
    assert style.NETWORK_LABELS["resnet50"] == style.LABELS["resnet50"] == "ResNet50"
    # criteria are not known here: the caller's labels name them, alone or in a run name
    assert style.label("squeezenet-taylor_activation") == "SqueezeNet, taylor_activation"
    names = {"taylor_activation": "Taylor (activations)", "resnet50-control": "control"}
    assert style.label("taylor_activation", labels=names) == "Taylor (activations)"
    assert (
        style.label("squeezenet-taylor_activation", labels=names)
        == "SqueezeNet, Taylor (activations)"
    )
    assert (
        style.label("resnet50-control", "t1/eer", labels=names) == "control, EER, 1-image templates"
    )
    # unknown keys and readable text come back unchanged: labelling twice does no harm
    assert style.label("my-own-run") == "my-own-run" and style.label("SqueezeNet") == "SqueezeNet"
    assert style.label(style.label("l1_norm", labels={"l1_norm": "L1 norm"})) == "L1 norm"


def test_interval_forest_panels_split_by_column_with_the_legend_outside():
    frame = pd.DataFrame(
        {
            "what": ["squeezenet-l1_norm", "resnet50-random", "squeezenet-none"],
            "arch": ["squeezenet", "resnet50", "squeezenet"],
            "panel": ["EER", "EER", "TAR"],
            "estimate": [0.05, 0.0, -0.3],
            "low": [0.01, -0.05, -0.4],
            "high": [0.09, 0.05, -0.1],
        }
    )
    fig = analysis.interval_forest(
        frame,
        label="what",
        hue="arch",
        panel="panel",
        xlabel={"EER": "eer diff"},
        labels={"l1_norm": "L1 norm"},
        title="t",
    )
    eer, tar = fig.axes
    assert (eer.get_title(), tar.get_title()) == ("EER", "TAR")
    assert eer.get_xlabel() == "eer diff" and tar.get_xlabel() == ""
    assert [t.get_text() for t in eer.get_yticklabels()] == [
        "SqueezeNet, L1 norm",
        "ResNet50, random",
    ]
    assert len(tar.get_yticklabels()) == 1
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["SqueezeNet", "ResNet50"]
    fig.canvas.draw()
    box = legend.get_window_extent().transformed(fig.transFigure.inverted())
    assert box.x0 >= 0.99  # right of the panels
    plt.close(fig)


def test_tolerance_selection_shades_only_above_the_original():
    hist = _history()
    hist = hist[hist["arch"] == "squeezenet"]
    fig = analysis.tolerance_selection(
        hist, metrics=["t1/eer"], tolerance=0.02, selected={"t1/eer": hist.iloc[2]}
    )
    ax = fig.axes[0]
    (band,) = [p for p in ax.patches if p.get_label().startswith("tolerance")]
    if isinstance(band, Rectangle):  # matplotlib >= 3.9
        ys = [band.get_y(), band.get_y() + band.get_height()]
    else:
        ys = np.asarray(band.get_xy())[:, 1]
    assert min(ys) == pytest.approx(0.20) and max(ys) == pytest.approx(0.22)
    assert band.get_label() == "tolerance (original + 0.02)"
    assert not ax.containers  # no interval given: none drawn
    plt.close(fig)
    fig = analysis.tolerance_selection(
        hist, metrics=["t1/eer"], tolerance=0.02, selected={"t1/eer": hist.iloc[2]},
        intervals={"t1/eer": (0.15, 0.26)},
    )  # fmt: skip
    (bars,) = fig.axes[0].containers
    (segment,) = bars.lines[2][0].get_segments()
    assert [y for _, y in segment] == pytest.approx([0.15, 0.26])
    plt.close(fig)


def test_change_curves_draw_each_network_with_its_band_and_ring_the_claims():
    frame = pd.DataFrame(
        {
            "arch": ["squeezenet"] * 3 + ["resnet50"] * 3,
            "step": [1, 2, 3] * 2,
            "filters_removed_pct": [10.0, 20.0, 30.0] * 2,
            "metric": "t1/eer",
            "estimate": [0.0, 0.01, 0.03, 0.0, 0.02, 0.05],
        }
    ).assign(low=lambda f: f["estimate"] - 0.01, high=lambda f: f["estimate"] + 0.01)
    mark = {"metric": "t1/eer", "x": 20.0, "y": 0.01, "low": 0.0, "high": 0.02, "text": "C1: x"}
    mark["envelope"] = (-0.01, 0.04)
    fig = analysis.change_curves(
        frame, metrics=["t1/eer"], ylabel="change", thresholds={"t1/eer": 0.02}, marks=[mark]
    )
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["SqueezeNet"].get_color() == style.COLOR_OF["squeezenet"]
    assert lines["ResNet50"].get_color() == style.COLOR_OF["resnet50"]
    assert len(ax.collections) >= 2 and "tolerance (+0.02)" in lines
    assert [t.get_text() for t in ax.texts] == ["C1: x"]
    spans = sorted(
        [y for _, y in bars.lines[2][0].get_segments()[0]] for bars in ax.containers
    )  # the envelope behind the interval
    assert spans == [pytest.approx([-0.01, 0.04]), pytest.approx([0.0, 0.02])]
    plt.close(fig)


def test_pruning_curves_against_the_step_for_a_run_that_removes_nothing():
    hist = _history()
    hist = hist[hist["arch"] == "squeezenet"].assign(filters_removed_pct=0.0)
    fig = pruning.pruning_curves(hist, metrics=["t1/eer"], x="step", control=True)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    # nothing is pruned: no "pruned" in any label
    assert set(lines) == {"before fine-tuning", "after fine-tuning", pruning.FINAL_LABEL}
    assert list(lines["before fine-tuning"].get_xdata()) == [0, 1, 2, 3]
    assert ax.get_xlabel() == "pruning step"
    plt.close(fig)


def test_pruning_curves_keep_a_flat_eer_from_looking_like_a_trend():
    hist = _history()
    hist = hist[hist["arch"] == "squeezenet"].assign(**{"t1/eer": 0.095})
    hist.loc[hist.index[1], "t1/eer"] = 0.1  # a 0.005 wiggle
    fig = pruning.pruning_curves(hist, metrics=["t1/eer"])
    low, high = fig.axes[0].get_ylim()
    assert high - low >= style.RATE_MIN_SPAN - 1e-12 and low <= 0.095 and high >= 0.1
    plt.close(fig)
    # an accuracy of 1 wiggling by one image out of 60: widened around it, but no further past 1
    # than a margin that draws its markers whole
    hist = hist.assign(**{"val/acc": 1.0})
    hist.loc[hist.index[2], "val/acc"] = 1.0 - 1 / 60
    fig = pruning.pruning_curves(hist, metrics=["val/acc"])
    low, high = fig.axes[0].get_ylim()
    margin = 0.05 * style.RATE_MIN_SPAN
    assert high - low == pytest.approx(style.RATE_MIN_SPAN) and high == pytest.approx(1 + margin)
    plt.close(fig)
    # a flat accuracy of 0.983: matplotlib pads it past the minimum span, and past 1
    fig = pruning.pruning_curves(hist.assign(**{"val/acc": 0.983}), metrics=["val/acc"])
    low, high = fig.axes[0].get_ylim()
    assert low < 0.983 < high <= 1 + margin + 1e-12
    plt.close(fig)


def test_one_run_is_drawn_in_its_own_colour():
    hist = _history()
    hist = hist[hist["arch"] == "resnet50"]
    colour = style.palette(["resnet50-random"])["resnet50-random"]
    fig = pruning.pruning_curves(hist, metrics=["t1/eer"], color=colour)
    assert {line.get_color() for line in fig.axes[0].get_lines()} == {colour}
    final = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == pruning.FINAL_LABEL]
    assert len(final) == 1 and list(final[0].get_ydata()) == [0.21]  # the final row, a star
    plt.close(fig)
    fig = pruning.pruning_curves(hist, metrics=["t1/eer"])  # no colour: the palette's first
    assert {line.get_color() for line in fig.axes[0].get_lines()} != {colour}
    plt.close(fig)


def test_dvc_plots_draw_numeric_columns_that_exist_with_labelled_axes():
    # `dvc plots show` reads dvc.yaml's definitions against the committed tables: every series
    # must be a column of its file, x numeric (not text categories), both axes labelled
    import yaml

    from facepruning.project import project_root

    root = project_root(__file__)
    plots = yaml.safe_load((root / "dvc.yaml").read_text())["plots"]
    series = [p for p in plots if isinstance(p, dict)]
    assert series, "dvc.yaml defines no data-series plot"
    for plot in series:
        ((title, spec),) = plot.items()
        assert spec.get("x_label") and spec.get("y_label"), title
        for path, columns in spec["y"].items():
            table = pd.read_csv(root / path)
            assert set(columns) <= set(table.columns), (title, set(columns) - set(table.columns))
            assert pd.api.types.is_numeric_dtype(table[spec["x"]]), (title, spec["x"])
            assert all(pd.api.types.is_numeric_dtype(table[c]) for c in columns), title


def test_a_network_or_criterion_keeps_its_colour_in_every_figure():
    runs = ["squeezenet-taylor_activation", "resnet50-taylor_activation"]
    assert style.palette(runs)["resnet50-taylor_activation"] == style.COLOR_OF["resnet50"]
    assert style.palette(["resnet50"])["resnet50"] == style.COLOR_OF["resnet50"]
    criteria = ["squeezenet-random", "squeezenet-l1_norm"]  # one network: by criterion
    assert style.palette(criteria)["squeezenet-random"] == style.COLOR_OF["random"]
    assert style.palette(["random", "l1_norm"])["l1_norm"] == style.COLOR_OF["l1_norm"]
    other = style.palette(["squeezenet", "something else"])["something else"]
    assert other not in (style.COLOR_OF["squeezenet"],)


def test_taylor_checks_keep_tick_labels_of_tiny_losses_apart():
    rng = np.random.default_rng(0)
    checks = {
        role: SimpleNamespace(
            predicted=(p := rng.normal(0, scale, 24)),
            measured=p + rng.normal(0, scale / 5, 24),
            group=f"backbone.{role}",
            correlation=0.9,
        )
        for role, scale in (("stem", 1e-3), ("widest", 7e-5))
    }
    fig = pruning.taylor_checks(checks)
    fig.canvas.draw()
    for ax in fig.axes:
        boxes = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) >= 3
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False))  # no overlap
        assert ax.get_title().startswith(("stem:", "widest:"))
    plt.close(fig)


def test_the_unnormalised_variant_has_its_colour_by_run_name_and_by_variant_key():
    keys = ["taylor_activation", "taylor_activation (unnormalized)", "random"]
    colours = style.palette(keys)
    assert (
        colours["taylor_activation (unnormalized)"]
        == style.COLOR_OF["taylor_activation_unnormalized"]
    )
    assert colours["taylor_activation"] == style.COLOR_OF["taylor_activation"]
    assert len(set(colours.values())) == 3
