"""Section 6: whole-process cost of each stage of the default pipeline (wall time, CPU, peak RSS).

Each stage's notebook runs the way ``dvc repro`` runs it (``python -m facepruning run-notebook``
with the stage's params.yaml section), in a subprocess, with everything written to a temporary
folder and the long loops cut short: ``epochs=1`` for training, ``max_steps=1`` with one
fine-tuning epoch and no final fine-tuning for pruning. Peak memory is therefore that of a real
stage (same data, same networks, same batch sizes); time is not (it is one epoch/step, plus the
fixed cost of starting a kernel and importing everything).

Memory is measured by a sampler that walks the stage's process tree every 0.2 s: ``max_rss`` is
the largest ``VmHWM`` (the kernel's exact high-water mark of one process, usually the notebook
kernel) and ``tree_peak`` the largest sampled sum of ``VmRSS`` (runner + kernel together).
``getrusage``/``wait4``'s ``ru_maxrss`` is not used: Linux carries the parent's high-water mark
over ``fork`` + ``exec``, so a child of a large benchmark process reports the parent's size.

Executed notebooks of a real ``dvc repro`` in ``reports/`` are read too, when present, for the
papermill run time of every stage at full size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, Settings

NB = ROOT / "notebooks"
ARCHS = ("squeezenet", "mobilenet_v2", "resnet50")


def _status_kib(pid: int | str, keys: tuple[str, ...]) -> dict[str, int]:
    """Fields of /proc/<pid>/status in KiB (VmRSS, VmHWM, ...); empty if the process is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in keys:
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _tree(root_pid: int) -> dict[int, dict[str, int]]:
    """VmRSS and VmHWM (KiB) of ``root_pid`` and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                stat = f.read()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out[pid] = _status_kib(pid, ("VmRSS", "VmHWM"))
        todo.extend(c for c, p in parents.items() if p == pid)
    return out


def run_stage(args: list[str]) -> dict[str, Any]:
    """Run ``python -m facepruning run-notebook ARGS`` and measure it."""
    cmd = [sys.executable, "-m", "facepruning", "run-notebook", *args]
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    tree_peak = [0]
    hwm: dict[int, int] = {}
    done = threading.Event()

    def sample():
        while not done.is_set():
            tree = _tree(proc.pid)
            tree_peak[0] = max(tree_peak[0], sum(v.get("VmRSS", 0) for v in tree.values()))
            for pid, v in tree.items():
                hwm[pid] = max(hwm.get(pid, 0), v.get("VmHWM", 0))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    return {
        "ok": proc.returncode == 0,
        "error": None if proc.returncode == 0 else stderr.strip().splitlines()[-5:],
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "max_rss_mib": max(hwm.values(), default=0) / 1024,
        "tree_peak_rss_mib": tree_peak[0] / 1024,
        "processes": len(hwm),
    }


def _papermill_duration(path: Path) -> float | None:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        return float(nb["metadata"]["papermill"]["duration"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def existing_reports() -> dict[str, Any]:
    """Papermill run times of the executed notebooks of a real ``dvc repro``, if any."""
    out = {}
    for path in sorted((ROOT / "reports").glob("*.ipynb")):
        out[path.stem] = {"papermill_duration_s": _papermill_duration(path)}
    return out


def run(settings: Settings) -> dict[str, Any]:
    archs = ("squeezenet",) if settings.quick else ARCHS
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        t = Path(tmp)
        data = t / "processed"
        stages["prepare"] = run_stage(
            [
                str(NB / "01_data_preparation.ipynb"),
                str(t / "reports" / "01.ipynb"),
                "--section",
                "prepare",
                "--set",
                f"raw_dir={t / 'raw'}",
                f"out_dir={data}",
                f"figures_dir={t / 'figures' / '01'}",
            ]
        )
        for arch in archs:
            m = t / "models" / arch
            stages[f"train/{arch}"] = run_stage(
                [
                    str(NB / "02_baseline_training.ipynb"),
                    str(t / "reports" / f"02_{arch}.ipynb"),
                    "--section",
                    "train",
                    "--set",
                    f"arch={arch}",
                    f"data_dir={data}",
                    f"model_path={m / 'baseline.pt'}",
                    f"metrics_path={t / 'metrics' / f'train_{arch}.json'}",
                    f"history_path={t / 'metrics' / f'train_{arch}.csv'}",
                    f"figures_dir={t / 'figures' / '02' / arch}",
                    f"checkpoint_dir={t / 'checkpoints' / 'train' / arch}",
                    "epochs=1",
                ]
            )
            if not stages[f"train/{arch}"]["ok"]:
                continue
            key = f"{arch}-taylor_activation"
            stages[f"prune/{key}"] = run_stage(
                [
                    str(NB / "03_taylor_pruning.ipynb"),
                    str(t / "reports" / f"03_{key}.ipynb"),
                    "--section",
                    "prune",
                    "--set",
                    f"arch={arch}",
                    "criterion=taylor_activation",
                    f"data_dir={data}",
                    f"baseline_path={m / 'baseline.pt'}",
                    f"model_path={m / 'pruned_taylor_activation.pt'}",
                    f"metrics_path={t / 'metrics' / f'prune_{key}.json'}",
                    f"history_path={t / 'metrics' / f'prune_{key}.csv'}",
                    f"layers_path={t / 'metrics' / f'prune_{key}_layers.csv'}",
                    f"figures_dir={t / 'figures' / '03' / key}",
                    f"checkpoint_dir={t / 'checkpoints' / 'prune' / key}",
                    "max_steps=1",
                    "finetune_epochs=1",
                    "final_finetune_epochs=0",
                ]
            )
        for name, stage in stages.items():
            if stage["ok"]:
                nb_name = {
                    "prepare": "01.ipynb",
                }.get(name)
                if nb_name is None:
                    kind, _, rest = name.partition("/")
                    nb_name = f"02_{rest}.ipynb" if kind == "train" else f"03_{rest}.ipynb"
                stage["papermill_duration_s"] = _papermill_duration(t / "reports" / nb_name)
    return {
        "note": "stages cut short: train epochs=1; prune max_steps=1, finetune_epochs=1, "
        "final_finetune_epochs=0; peak memory is that of a real stage, time is not",
        "stages": stages,
        "reports": existing_reports(),
    }
