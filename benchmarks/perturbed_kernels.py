"""Do the verdicts survive other arithmetic? SqueezeNet's fold-0 run redone with other kernels.

A verdict must not flip when the last bit of the arithmetic changes. This script retrains the
training run that the main SqueezeNet runs share (fold 0, seed 0: baseline, Taylor path and
control, with params.yaml's sections, as dvc.yaml's stages run them) with the kernel pin lifted
and other vector kernels (``PERTURBED``: oneDNN's convolutions limited to AVX, without fused
multiply-add, and OpenBLAS's Sandybridge kernels; the same two threads; ATen's scalar code, the
other choice, trains 3.5 times slower), so training parts from the committed run.
``trained_differently`` in the report says whether it did (the training histories differ). It
then judges every claim twice on the same identity resamples, as notebook 04 does: with the
pipeline's runs, and with the perturbed runs in place of the fold-0 seed-0 ones (the other folds
and seeds unchanged).
No verdict may cross from ``holds`` to ``refuted`` or back; a change to or from ``inconclusive``
is listed with both intervals.

Needs the pipeline's outputs (``make repro`` first); about 10 minutes on 2 cores. Writes
``perturbed_kernels.json`` and ``perturbed_kernels.md`` next to this file (``--out`` elsewhere)::

    python benchmarks/perturbed_kernels.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT

PERTURBED = {
    "FACEPRUNING_NATIVE_KERNELS": "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX",  # convolutions without AVX2's fused multiply-add
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Sandybridge",  # the pair scores through other BLAS kernels
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
TAYLOR, CONTROL = "squeezenet-taylor_activation", "squeezenet-control"
RESAMPLES = 10_000


def _cli(stage: str, settings: dict[str, str]) -> None:
    """``python -m facepruning <stage> --set ...`` under :data:`PERTURBED`, in the project."""
    args = [sys.executable, "-m", "facepruning", stage, "--set"]
    args += [f"{k}={v}" for k, v in settings.items()]
    subprocess.run(args, cwd=ROOT, env={**os.environ, **PERTURBED}, check=True)


def retrain(out: Path) -> None:
    """Baseline, Taylor path and control of fold 0, seed 0, written under ``out``."""
    common = {"arch": "squeezenet", "data_dir": "data/processed", "seed": "0"}
    baseline = out / "baseline.pt"
    _cli(
        "train",
        {
            **common,
            "model_path": str(baseline),
            "metrics_path": str(out / "train.json"),
            "history_path": str(out / "train_history.csv"),
            "checkpoint_dir": str(out / "checkpoints" / "train"),
        },
    )
    for run, extra in (
        (TAYLOR, {"criterion": "taylor_activation", "normalize_scores": "true"}),
        (CONTROL, {"criterion": "none", "steps_of": str(out / "prune" / f"{TAYLOR}.json")}),
    ):
        _cli(
            "prune",
            {
                **common,
                **extra,
                "run": run,
                "baseline_path": str(baseline),
                "model_path": str(out / f"{run}.pt"),
                "metrics_path": str(out / "prune" / f"{run}.json"),
                "history_path": str(out / "prune" / f"{run}_history.csv"),
                "layers_path": str(out / "prune" / f"{run}_layers.csv"),
                "scores_path": str(out / "scores" / f"{run}.pt"),
                "checkpoint_dir": str(out / "checkpoints" / run),
            },
        )


def judge(perturbed: Path | None, tolerance: float) -> dict[str, dict]:
    """Every claim line (:func:`facepruning.analysis.judge_claims`) of the pipeline's runs, with
    the runs under ``perturbed`` in place of theirs; by id."""
    from facepruning import analysis

    load = analysis.load_runs_with_scores
    runs, scores = load(ROOT / "metrics" / "prune", ROOT / "scores")
    replicates, rep_scores = load(
        ROOT / "metrics" / "replicates" / "prune", ROOT / "scores" / "replicates"
    )
    if perturbed is not None:
        new_runs, new_scores = load(perturbed / "prune", perturbed / "scores")
        runs, scores = {**runs, **new_runs}, {**scores, **new_scores}
    pooled = {**rep_scores, **scores}
    units = {k: analysis.unit_of(r) for k, r in {**replicates, **runs}.items()}
    folds = analysis.fold_counts(pooled, units, n_resamples=RESAMPLES)
    lines = analysis.judge_claims(
        runs, pooled, tolerance=tolerance, counts=folds, replicates=replicates
    )
    numbers = ("estimate", "low", "high", "threshold", "loo_low", "loo_high")
    return {
        c["id"]: {"verdict": c["verdict"]}
        | {k: analysis.finite_or_none(c.get(k)) for k in numbers}  # JSON has no NaN
        for c in lines
    }


def compare(before: dict[str, dict], after: dict[str, dict]) -> list[dict]:
    """One row per claim line: both verdicts and intervals, and whether the verdict crossed
    (``holds`` <-> ``refuted``) or moved to or from ``inconclusive``."""
    rows = []
    for cid, b in before.items():
        a = after[cid]
        pair = {b["verdict"], a["verdict"]}
        change = "same" if len(pair) == 1 else "crossed" if "inconclusive" not in pair else "moved"
        rows.append({"id": cid, "change": change, "pipeline": b, "perturbed": a})
    return rows


def _fmt(c: dict) -> str:
    """ "estimate [interval] verdict", with the leave-one-run-out envelope the verdict is taken
    on where the claim pools several training runs."""
    from facepruning.readings import fmt_envelope

    text = f"{c['estimate']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"
    if c.get("loo_low") is not None:
        text += f", without any one run {fmt_envelope([c['loo_low'], c['loo_high']])}"
    return f"{text} {c['verdict']}"


def markdown(rows: list[dict], trained_differently: bool = True) -> str:
    crossed = [r["id"] for r in rows if r["change"] == "crossed"]
    moved = [r["id"] for r in rows if r["change"] == "moved"]
    out = [
        "# Verdicts under other vector kernels",
        "",
        "SqueezeNet's fold-0 training run (baseline, Taylor path, control) retrained with "
        + ", ".join(f"`{k}={v}`" for k, v in PERTURBED.items())
        + (
            " (its training history differs from the pipeline's)"
            if trained_differently
            else " (its training history came out identical: these kernels changed nothing)"
        )
        + "; every claim judged with the pipeline's runs and with the perturbed ones in their "
        f"place ({RESAMPLES:,} identity resamples, the same for both). "
        + (
            f"Crossed between holds and refuted: {', '.join(crossed)}. "
            if crossed
            else "No verdict crossed between holds and refuted. "
        )
        + (
            f"Moved to or from inconclusive: {', '.join(moved)}."
            if moved
            else "No verdict moved to or from inconclusive."
        ),
        "",
        "A verdict is taken on the envelope of the pooled interval and the intervals pooled "
        "without each training run in turn (docs/PAPERS.md): it must not rest on one run.",
        "",
        "| claim | pipeline: estimate [95% interval] verdict | perturbed kernels | change |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {r['id']} | {_fmt(r['pipeline'])} | {_fmt(r['perturbed'])} | {r['change']} |"
        for r in rows
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument(
        "--runs",
        type=Path,
        help="keep the perturbed runs there; reused without retraining if written there earlier",
    )
    args = parser.parse_args(argv)
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    tolerance = float(params["analysis"]["eer_tolerance"])
    with tempfile.TemporaryDirectory(prefix="perturbed_kernels_") as tmp:
        where = args.runs or Path(tmp)
        if not (where / "train.json").is_file():
            retrain(where)
        rows = compare(judge(None, tolerance), judge(where, tolerance))
        ours = (ROOT / "metrics" / "train" / "squeezenet_history.csv").read_bytes()
        differs = (where / "train_history.csv").read_bytes() != ours
    (args.out / "perturbed_kernels.json").write_text(
        json.dumps(
            {
                "perturbed": PERTURBED,
                "trained_differently": differs,
                "resamples": RESAMPLES,
                "claims": rows,
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    text = markdown(rows, differs)
    (args.out / "perturbed_kernels.md").write_text(text, encoding="utf-8")
    print(text)
    return 1 if any(r["change"] == "crossed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
