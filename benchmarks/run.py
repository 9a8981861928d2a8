"""Benchmarks: what pruning buys on a CPU, and what our pipeline costs (``make bench``).

Measures and reports; never fails because a machine is slow (there are no timing asserts). Writes
``results.json`` (every number) and ``results.md`` (tables) to ``--out`` (default: this folder).

Sections (``--only NAME[,NAME]`` runs some of them, ``--skip NAME`` leaves some out):

- ``inference``: latency / throughput of pruned vs unpruned networks with each group kept at a
  multiple of 1, 8 or 16 channels, BN-folded channels_last eager and ONNX Runtime, against the
  MAC reduction; its ``summary`` rows and ``default_channel_multiple`` are copied to the top of
  ``results.json``;
- ``training``: our ``train_epoch`` vs a bare PyTorch loop (target: < 5% overhead);
- ``scoring``: a Taylor scoring mini-batch vs a plain step (target: < 1.25x), and memory while
  scores accumulate over few vs many batches (target: flat);
- ``surgery``: time of one pruning step's channel bookkeeping per architecture;
- ``data``: images/s from the in-memory cache vs decoding image files each epoch;
- ``engine``: our one-call engine beside Torch-Pruning's MetaPruner on torchvision networks
  (lines of user code, seconds per step, parameters and MACs after, pruned == masked);
- ``pipeline``: wall time, CPU time and peak memory of each pipeline stage, run as notebooks
  with short parameters. Opt-in (``--all`` or ``--only pipeline``): it starts seven notebook
  kernels and takes minutes even on a quiet machine;
- ``phases``: where a full-size pruning run's time goes (scoring, removal, BatchNorm
  re-estimation, evaluation, fine-tuning), on the pipeline's trained networks. Opt-in, after
  ``make repro``.

``--quick`` is a tiny version of the default sections (the functional test uses it). A run with
``--only`` merges its sections into an existing ``results.json`` of the same mode, so
``make bench`` followed by ``run.py --only pipeline`` gives one report with every section.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report  # noqa: E402
import torch  # noqa: E402
from common import ROOT, Settings, machine_info  # noqa: E402

SECTIONS = ("inference", "training", "scoring", "surgery", "data", "pipeline", "engine", "phases")
OPT_IN = ("pipeline", "phases")


def _section(name: str):
    if name == "inference":
        import bench_inference

        return bench_inference.run
    if name == "training":
        import bench_training

        return bench_training.run_training
    if name == "scoring":
        import bench_training

        return bench_training.run_scoring
    if name == "surgery":
        import bench_surgery

        return bench_surgery.run
    if name == "data":
        import bench_data

        return bench_data.run
    if name == "engine":
        import bench_engine

        return bench_engine.run
    if name == "phases":
        import bench_phases

        return bench_phases.run
    import bench_pipeline

    return bench_pipeline.run


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if n not in SECTIONS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown section(s) {bad}; choose from {SECTIONS}")
    return names


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, tuples lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _merge(results: dict[str, Any], path: Path, *, merge: bool) -> dict[str, Any]:
    """Keep the other sections of an earlier run of the same mode when only some were rerun."""
    if not merge or not path.is_file():
        return results
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return results
    if old.get("settings", {}).get("quick") != results["settings"]["quick"]:
        return results
    sections = {**old.get("sections", {}), **results["sections"]}
    results["sections"] = {n: sections[n] for n in SECTIONS if n in sections}
    results["settings"]["sections"] = list(results["sections"])
    results["elapsed_s"] = sum(s.get("elapsed_s", 0) for s in results["sections"].values())
    return results


DEFAULT_OUT = (ROOT / "benchmarks").resolve()


def pipeline_multiple() -> int:
    """The ``channel_multiple`` the pipeline prunes with (params.yaml)."""
    from facepruning.project import load_params

    return int(load_params(ROOT / "params.yaml", ["prune"])["channel_multiple"])


def update_readme(results: dict[str, Any]) -> None:
    """Regenerate README.md's speed block from these results and the GPU run's, if any."""
    from facepruning.readme import replace_blocks

    gpu_path = DEFAULT_OUT / "gpu_results.json"
    gpu = json.loads(gpu_path.read_text(encoding="utf-8")) if gpu_path.is_file() else None
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = report.readme_block(results, gpu, pipeline_multiple())
    readme.write_text(replace_blocks(text, {"speed": block}), encoding="utf-8")
    print(f"[bench] updated the speed block of {readme.name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny version (seconds, for tests)")
    parser.add_argument("--all", action="store_true", help="also the opt-in pipeline section")
    parser.add_argument("--only", type=_names, default=None, help="comma-separated sections")
    parser.add_argument("--skip", type=_names, default=[], help="comma-separated sections")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (the default also updates README.md's speed block)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch/ORT intra-op threads")
    args = parser.parse_args(argv)

    settings = Settings.make(quick=args.quick, threads=args.threads, out_dir=args.out)
    torch.set_num_threads(settings.threads)
    if args.only is not None:
        names = args.only
    else:
        names = [n for n in SECTIONS if args.all or n not in OPT_IN]
    names = [n for n in names if n not in args.skip]

    results: dict[str, Any] = {
        "machine": machine_info(settings.threads),
        "settings": {
            "quick": settings.quick,
            "repeats": settings.repeats,
            "warmup": settings.warmup,
            "min_sample_s": settings.min_sample_s,
            "threads": settings.threads,
            "sections": names,
        },
        "sections": {},
    }
    t_all = time.perf_counter()
    for name in names:
        print(f"[bench] {name} ...", flush=True)
        t0 = time.perf_counter()
        try:
            data = _section(name)(settings)
            data["elapsed_s"] = time.perf_counter() - t0
        except Exception as e:  # a broken section is reported, the others still run
            traceback.print_exc()
            data = {"error": f"{type(e).__name__}: {e}", "elapsed_s": time.perf_counter() - t0}
        data["run_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results["sections"][name] = data
        print(f"[bench] {name} done in {data['elapsed_s']:.1f} s", flush=True)
    results["elapsed_s"] = time.perf_counter() - t_all
    machine = results["machine"]
    machine["load_average_start"] = machine.pop("load_average", None)
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    args.out.mkdir(parents=True, exist_ok=True)
    results = _merge(_clean(results), args.out / "results.json", merge=args.only is not None)
    # The answer to "is it faster?" at the top: the inference section's rows and chosen multiple.
    inference = results["sections"].get("inference", {})
    for key in ("default_channel_multiple", "summary"):
        if key in inference:
            results[key] = inference[key]
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (args.out / "results.md").write_text(report.markdown(results), encoding="utf-8")
    print(f"[bench] wrote {args.out / 'results.json'} and results.md", flush=True)
    inference = results["sections"].get("inference", {})
    if args.out.resolve() == DEFAULT_OUT and not settings.quick and "summary" in inference:
        update_readme(results)  # a quick or failed run leaves the README's numbers alone
    errors = [n for n, s in results["sections"].items() if "error" in s]
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
