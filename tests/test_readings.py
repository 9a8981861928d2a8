"""The interpreting sentences change with the numbers they interpret (facepruning.readings)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd

from facepruning import readings

LEVELS = [0.01, 0.005, 0.001, 0.0001]


def _training(val_loss, lr=None):
    n = len(val_loss)
    return pd.DataFrame(
        {
            "epoch": np.arange(1, n + 1),
            "val_loss": val_loss,
            "train_loss": np.minimum(val_loss, 3.0),
            "lr": lr if lr is not None else [0.01] * n,
            "train_acc": np.linspace(0.1, 0.99, n),
            "val_acc": np.linspace(0.1, 0.9, n),
        }
    )


def test_training_reading_tells_still_falling_from_levelled_off():
    falling = readings.training_reading(
        _training(np.linspace(3, 0.1, 20)), lr_levels=LEVELS, converged=False, patience=3
    )
    assert "still falling" in falling and "not converged" in falling and "epoch 20" in falling
    flat = readings.training_reading(
        _training(np.r_[np.linspace(3, 0.1, 10), np.full(10, 0.2)]),
        lr_levels=LEVELS,
        converged=False,
        patience=3,
    )
    assert "levelled off" in flat and "still falling" not in flat and "epoch 10" in flat
    done = readings.training_reading(
        _training(np.r_[np.linspace(3, 0.1, 10), np.full(5, 0.2)], lr=[0.01] * 10 + [1e-4] * 5),
        lr_levels=LEVELS,
        converged=True,
        patience=3,
    )
    assert "ended training" in done and "still falling" not in done


def test_training_reading_names_a_validation_spike_only_when_there_is_one():
    spiky = _training(np.r_[1620.0, 40.0, np.linspace(3, 0.1, 18)])
    text = readings.training_reading(spiky, lr_levels=LEVELS, converged=False, patience=3)
    assert "peaks at 1,620 (epoch 1)" in text and "in 2 epochs, the last of them epoch 2" in text
    calm = _training(np.linspace(3, 0.1, 20))
    assert "times the best" not in readings.training_reading(
        calm, lr_levels=LEVELS, converged=False, patience=3
    )


def _pruning(pruned, finetuned):
    rows = [{"step": 0, "stage": "original", "t1/eer": 0.10, "filters_removed_pct": 0.0}]
    for step, (p, f) in enumerate(zip(pruned, finetuned, strict=True), start=1):
        rows.append({"step": step, "stage": "pruned", "t1/eer": p, "filters_removed_pct": 4 * step})
        rows.append(
            {"step": step, "stage": "finetuned", "t1/eer": f, "filters_removed_pct": 4 * step}
        )
    rows.append({"step": len(pruned), "stage": "final", "t1/eer": 0.12, "filters_removed_pct": 40})
    return pd.DataFrame(rows)


def test_finetuning_reading_follows_the_sign_of_what_finetuning_does():
    helps = readings.finetuning_reading(
        _pruning([0.15, 0.16, 0.17], [0.11, 0.12, 0.18]), control=False
    )
    assert "lowers it in 2 of 3 steps" in helps and "win back" not in helps
    hurts = readings.finetuning_reading(
        _pruning([0.139, 0.14, 0.15], [0.173, 0.16, 0.14]), control=False
    )
    assert "raises it in 2 of 3 steps" in hurts and "does not win back" in hurts
    assert "0.100 unpruned" in hurts and "0.150 at step 3" in hurts and "0.120 after" in hurts


def test_finetuning_reading_of_the_control_speaks_of_training_not_pruning():
    text = readings.finetuning_reading(_pruning([0.1, 0.1], [0.09, 0.095]), control=True)
    assert "nothing removed" in text and "filters removed" not in text
    assert "removal" not in text and "lowers it in 2 of 2" in text
    worse = readings.finetuning_reading(_pruning([0.1, 0.1], [0.12, 0.11]), control=True)
    assert "raises it in 2 of 2 steps (lowers it in 0)" in worse and "win back" not in worse


def test_width_reading_does_not_credit_a_width_blind_criterion():
    taylor = readings.width_reading(0.36, criterion="taylor_activation")
    assert "wider groups lost somewhat more, by rank" in taylor and "(claim C7)" in taylor
    assert "lost clearly more" in readings.width_reading(0.9, criterion="taylor_activation")
    assert "lost barely less" in readings.width_reading(-0.1, criterion="l1_norm")
    blind = readings.width_reading(0.36, criterion="random")
    assert "0.36" in blind and "wider groups lost" not in blind and "never looks at" in blind
    assert "no rank correlation" in readings.width_reading(float("nan"), criterion="random")


def test_taylor_check_reading_says_where_the_estimate_holds_and_where_it_fails():
    text = readings.taylor_check_reading({"stem": 0.2, "middle": 0.7, "widest": 0.99})
    assert "ranks channels as zeroing them does in the widest (rank correlation 0.99)" in text
    assert "roughly in the middle (rank correlation 0.70)" in text
    assert "fails in the stem (rank correlation 0.20)" in text
    fine = readings.taylor_check_reading({"stem": 0.95, "widest": 0.99})
    assert (
        "fails" not in fine
        and "the stem (rank correlation 0.95), the widest (rank correlation 0.99)" in fine
    )
    assert "No correlation" in readings.taylor_check_reading({"stem": float("nan")})


def test_digits_apart_keeps_a_number_off_the_threshold_it_misses():
    assert readings.digits_apart([-0.1027, 0.0125], 0.02) == 3  # nothing rounds onto +-0.02
    assert readings.digits_apart([-0.1027, 0.01988], 0.02) == 4  # 0.01988 would print +0.020
    assert readings.digits_apart([-0.01996], 0.02) == 5  # -0.0200 at 4 decimals
    assert readings.digits_apart([0.02, -0.02, None, float("nan")], 0.02) == 3  # exactly on it
    assert readings.digits_apart([0.01988], None) == 3  # no threshold, nothing to miss
    assert readings.fmt_envelope([-0.0197, 0.01988], 4) == "[-0.0197, +0.0199]"


def test_fmt_interval_at_the_digits_apart_shows_which_side_of_the_threshold():
    ends = [-0.10268, 0.019881]
    digits = readings.digits_apart(ends, 0.02)
    text = readings.fmt_interval(-0.0378, *ends, digits=digits, sign=True)
    assert text == "-0.0378 [-0.1027, +0.0199]"
    assert float(text.rpartition(", ")[2].rstrip("]")) < 0.02


def test_the_readings_and_the_readme_generator_load_no_network_or_analysis_code():
    """The README is rewritten from metrics alone: its sentences must not need torch or the
    analysis code (a test failing here means an import crept back in)."""
    code = (
        "import sys, facepruning.readings as r; print('torch' in sys.modules); "
        "import facepruning.readme; "
        "print(sorted(m for m in sys.modules if m.startswith('facepruning.analysis')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "[]"]


def test_claim_digits_reads_the_whole_claim_and_leaves_c7_alone():
    c6 = {
        "metric": "t1/eer change",
        "threshold": 0.02,
        "estimate": 0.034,
        "ci": [-0.0102, 0.0825],
        "parts": {"resnet50": {"estimate": -0.0378, "ci": [-0.1027, 0.01988]}},
    }
    assert readings.claim_digits(c6) == 4  # because of a sub-line's end
    assert readings.claim_digits({**c6, "parts": {}}) == 3
    assert readings.claim_digits({**c6, "without_one_run": [-0.01966, 0.095], "parts": {}}) == 4
    c7 = {"metric": "spearman rho (width, share removed) vs its null", "estimate": 0.0199}
    assert readings.claim_digits({**c7, "ci": [0.01988, 0.3], "threshold": 0.02}) == 3
