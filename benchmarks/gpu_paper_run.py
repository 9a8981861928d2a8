"""The papers' configuration end to end on a GPU, on a generated VGGFace2-shaped folder tree.

What a researcher with GPUs runs before pointing the pipeline at VGGFace2: the same commands, on
data of the same shape, so that every step (prepare with boxes and pose templates, training and
pruning under ``torchrun``) is exercised and timed. Nothing is downloaded: the faces are
synthetic, one smooth random pattern per identity, shifted, lit and noised per image, so the
networks have something to learn and the timings are real.

1. ``tree``: ``--identities`` folders ``n000001/0001_01.jpg`` ... of ``--images`` JPEGs each,
   ``loose_bb_all.csv`` (NAME_ID,X,Y,W,H) and ``test_posetemp_imglist.txt`` (30 images of each
   of ``--test-identities`` identities, the VGGFace2-Pose layout);
2. ``prepare``, ``train`` and ``prune`` with ``params-paper.yaml`` (113x113 crops of 129, batch
   128, 8 filters per step, streaming JPEG decoding with 8 workers), shortened by ``--epochs``
   and ``--steps``; train and prune under ``python -m torch.distributed.run``;
3. throughput of our training step and of a Taylor scoring step (``train_epoch``, with
   ``ImportanceAccumulator`` for scoring) on in-memory batches, per architecture, in images/s;
4. latency of the original network and of pruned copies (the pipeline's Taylor-pruned layouts
   read from ``--layouts``, rounded to channel multiples 1, 8 and 16) at batch 1 and 128.

Writes ``gpu_results.json`` to ``--out``. On a CPU, ``--tiny`` runs the same steps in seconds.
``--layouts`` is a JSON ``{arch: {group: channels}}`` (``benchmarks/taylor_layouts.json``, written
from a ``channel_multiple`` 1 pipeline run's pruned models by ``--write-layouts FILE``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import NUM_CLASSES, aligned_variants, figures, layout  # noqa: E402
from timing import summarize  # noqa: E402

from facepruning.data import BatchTransform  # noqa: E402
from facepruning.models import (
    build_model,  # noqa: E402
    load_model,  # noqa: E402
)
from facepruning.pruning import ImportanceAccumulator, prunable_groups  # noqa: E402
from facepruning.training import train_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ("squeezenet", "mobilenet_v2", "resnet50")
MULTIPLES = (1, 8, 16)
POSE_IMAGES = 30  # VGGFace2-Pose: 30 images per test identity


def write_tree(root: Path, identities: int, images: int, size: int, seed: int = 0) -> None:
    """Identity folders of JPEGs, the loose boxes and the pose template list."""
    rng = np.random.default_rng(seed)
    boxes = ["NAME_ID,X,Y,W,H"]
    for i in range(1, identities + 1):
        name = f"n{i:06d}"
        (root / "images" / name).mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        pattern = np.asarray(Image.fromarray(small).resize((size + 16, size + 16), Image.BICUBIC))
        for j in range(1, images + 1):
            dx, dy = rng.integers(0, 16, 2)
            face = pattern[dy : dy + size, dx : dx + size].astype(np.float32)
            face = face * rng.uniform(0.7, 1.3) + rng.normal(0, 12, face.shape)
            image = Image.fromarray(np.clip(face, 0, 255).astype(np.uint8))
            image.save(root / "images" / name / f"{j:04d}_01.jpg", quality=90)
            x, y = rng.integers(size // 10, size // 6, 2)
            boxes.append(f'"{name}/{j:04d}_01",{x},{y},{size - 2 * x},{size - 2 * y}')
    (root / "loose_bb_all.csv").write_text("\n".join(boxes) + "\n", encoding="utf-8")


def write_pose_list(root: Path, test_identities: int) -> None:
    lines = [
        f"n{i:06d}/{j:04d}_01.jpg"
        for i in range(1, test_identities + 1)
        for j in range(1, POSE_IMAGES + 1)
    ]
    (root / "test_posetemp_imglist.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _stage(command: str, sets: dict[str, Any], nproc: int, log: list[str]) -> float:
    """Run ``python -m facepruning COMMAND`` (under torch.distributed.run unless ``prepare``)."""
    argv = [sys.executable]
    if nproc:
        argv += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    argv += ["-m", "facepruning", command, "--params", str(ROOT / "params-paper.yaml")]
    argv += ["--set", *[f"{k}={v}" for k, v in sets.items()]]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log += [f"$ {' '.join(argv)}", proc.stdout[-3000:], proc.stderr[-3000:]]
    if proc.returncode:
        raise RuntimeError(f"{command} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _images_per_s(fn, batches: int, batch: int, repeats: int) -> dict[str, float]:
    fn()  # warm-up: cuDNN autotuning, allocator growth
    rates = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        rates.append(batches * batch / (time.perf_counter() - t0))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates)}


def throughput(arch: str, batch: int, batches: int, repeats: int, size: int) -> dict[str, Any]:
    """Images/s of a training step and of a Taylor scoring step on in-memory uint8 batches."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(arch, num_classes=NUM_CLASSES).to(device, memory_format=torch.channels_last)
    resize = round(size * 129 / 113)
    g = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randint(0, 256, (batch, 3, resize, resize), generator=g, dtype=torch.uint8),
            torch.randint(0, NUM_CLASSES, (batch,), generator=g),
            None,
        )
        for _ in range(batches)
    ]
    transform = BatchTransform(image_size=size, mean=127.5, std=64.0, train=True)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    groups = prunable_groups(model)

    def train():
        train_epoch(model, data, opt, transform, generator=torch.Generator().manual_seed(1))

    def score():
        with ImportanceAccumulator(model, groups, importance="taylor_activation") as acc:
            train_epoch(
                model,
                data,
                opt,
                transform,
                generator=torch.Generator().manual_seed(1),
                after_backward=acc.after_backward,
            )
        acc.scores()

    return {
        "train_images_per_s": _images_per_s(train, batches, batch, repeats),
        "score_images_per_s": _images_per_s(score, batches, batch, repeats),
    }


def _latency_ms(model, x, repeats: int, inner: int) -> dict[str, float]:
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        samples = []
        for _ in range(repeats):
            _sync()
            t0 = time.perf_counter()
            for _ in range(inner):
                model(x)
            _sync()
            samples.append((time.perf_counter() - t0) / inner * 1e3)
    stats = summarize(samples)  # the CPU benchmarks' median and IQR / median
    return {"median": stats.median, "spread": stats.spread}


def latency(arch: str, kept: dict[str, int], batches, size, repeats, inner) -> dict[str, Any]:
    """Original vs pruned copies (channel multiples) per batch size, eval, channels_last."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    original = build_model(arch, num_classes=NUM_CLASSES).eval()
    models = {"original": original}
    models |= {f"m{m}": v for m, v in aligned_variants(original, kept, MULTIPLES).items()}
    out: dict[str, Any] = {f"m{m}": figures(original, models[f"m{m}"], size) for m in MULTIPLES}
    for name, m in models.items():
        models[name] = m.to(device, memory_format=torch.channels_last).eval()
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device).contiguous(
            memory_format=torch.channels_last
        )
        times = {name: _latency_ms(m, x, repeats, inner) for name, m in models.items()}
        out[f"batch_{batch}"] = {
            "ms": times,
            "speedup": {
                name: times["original"]["median"] / t["median"]
                for name, t in times.items()
                if name != "original"
            },
        }
    return out


def write_layouts(path: Path) -> None:
    """``{arch: {group: channels}}`` of the pipeline's Taylor-pruned models."""
    layouts = {}
    for arch in ARCHS:
        path = ROOT / "models" / "pruned" / f"{arch}-taylor_activation.pt"
        model, meta = load_model(path)
        if meta.get("channel_multiple", 1) != 1:
            raise SystemExit(
                f"{path} was pruned with channel_multiple={meta['channel_multiple']}: the "
                "reference layouts must come from a run with channel_multiple 1 (dvc exp run -S "
                "prune.channel_multiple=1, then --write-layouts)"
            )
        layouts[arch] = layout(model)
    path.write_text(json.dumps(layouts, indent=1) + "\n", encoding="utf-8")


def end_to_end(work: Path, args: argparse.Namespace, log: list[str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    write_tree(work / "vggface2", args.identities, args.images, size=150 if not args.tiny else 64)
    write_pose_list(work / "vggface2", args.test_identities)
    result: dict[str, Any] = {"tree_s": time.perf_counter() - t0}
    tree, data = work / "vggface2", work / "processed"
    workers = 2 if args.tiny else 8
    size = {"resize": 36, "image_size": 32} if args.tiny else {}
    result["prepare_s"] = _stage(
        "prepare",
        {
            "data_root": tree / "images",
            "protocol_file": tree / "test_posetemp_imglist.txt",
            "bbox_file": tree / "loose_bb_all.csv",
            "test_identities": args.test_identities,
            "raw_dir": work / "raw",
            "out_dir": data,
            "figures_dir": work / "figures",
            **size,
        },
        0,
        log,
    )
    models = work / "models"
    result["train_s"] = _stage(
        "train",
        {
            "arch": "squeezenet",
            "data_dir": data,
            "model_path": models / "baseline.pt",
            "metrics_path": work / "train.json",
            "history_path": work / "train_history.csv",
            "checkpoint_dir": work / "checkpoints" / "train",
            "epochs": args.epochs,
            "weights": "null",
            "num_workers": workers,
        },
        args.nproc,
        log,
    )
    result["prune_s"] = _stage(
        "prune",
        {
            "run": "squeezenet-taylor_activation",
            "arch": "squeezenet",
            "data_dir": data,
            "baseline_path": models / "baseline.pt",
            "model_path": models / "pruned.pt",
            "metrics_path": work / "prune.json",
            "history_path": work / "prune_history.csv",
            "scores_path": work / "scores.pt",
            "layers_path": work / "prune_layers.csv",
            "checkpoint_dir": work / "checkpoints" / "prune",
            "max_steps": args.steps,
            "final_finetune_epochs": 1,
            "num_workers": workers,
        },
        args.nproc,
        log,
    )
    dataset = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    result["dataset"] = {k: dataset.get(k) for k in ("counts", "protocol", "image_size")}
    result["train_metrics"] = json.loads((work / "train.json").read_text(encoding="utf-8"))
    prune = json.loads((work / "prune.json").read_text(encoding="utf-8"))
    result["prune_metrics"] = {k: prune.get(k) for k in ("steps", "filters_removed_pct", "final")}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/gpu_paper_run"))
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--layouts", type=Path, default=None)
    parser.add_argument("--write-layouts", type=Path, default=None)
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--test-identities", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="seconds on a CPU: a smoke test")
    args = parser.parse_args(argv)
    if args.write_layouts:
        write_layouts(args.write_layouts)
        return 0
    torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    log: list[str] = []
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        # the run's settings, not where it happened to write
        "args": {
            k: str(v) for k, v in vars(args).items() if k not in ("work", "out", "write_layouts")
        },
    }
    try:
        results["end_to_end"] = end_to_end(args.work, args, log)
        size = 32 if args.tiny else 113
        batch, batches, repeats = (8, 2, 2) if args.tiny else (128, 20, 5)
        results["throughput"] = {
            arch: throughput(arch, batch, batches, repeats, size) for arch in ARCHS
        }
        if args.layouts:
            layouts = json.loads(args.layouts.read_text(encoding="utf-8"))
            lat_batches = (1, 8) if args.tiny else (1, 128)
            lat = (2, 2) if args.tiny else (15, 20)
            results["latency"] = {
                arch: latency(arch, layouts[arch], lat_batches, size, *lat) for arch in ARCHS
            }
    finally:
        (args.out / "gpu_results.json").write_text(
            json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8"
        )
        (args.out / "gpu_log.txt").write_text("\n".join(log) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=1, default=str)[-6000:])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("FACEPRUNING_NO_PROGRESS", "1")
    sys.exit(main())
