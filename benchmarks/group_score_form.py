"""How a multi-producer group's Taylor score is formed, chosen by measurement.

A group with several producers (a ResNet residual stream written by several blocks, MobileNetV2's
expansion conv tied to its depthwise conv) loses a channel in every producer at once. Per image,
producer p contributes ``t_p = mean_hw(a_p * dL/da_p)``; the group score can be

- ``sum_abs``: ``sum_p |t_p|`` (what ``ImportanceAccumulator`` does), or
- ``abs_sum``: ``|sum_p t_p|`` (the first-order change of removing all of them together),

each averaged over images. This script trains (or loads) MobileNetV2 and ResNet50 baselines on
the prepared ORL data, and for a sample of channels of every multi-producer group measures the
actual loss change when the channel is zeroed in every producer (one batch, evaluation mode),
then reports the Spearman rank correlation of each form with it. Writes
``group_score_form.json`` beside this file::

    python benchmarks/group_score_form.py [--data build/nbval/data/processed] [--epochs 15]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from facepruning.models import load_model
from facepruning.pruning import prunable_groups, zero_channels
from facepruning.stages import train

HERE = Path(__file__).resolve().parent


def baseline(arch: str, data: str, epochs: int, out: Path):
    """A trained network of ``arch``: the pipeline's if it exists, else a short training run."""
    pipeline = Path("models") / arch / "baseline.pt"
    if pipeline.is_file():
        return load_model(pipeline)[0], "pipeline baseline"
    if (out / f"{arch}.pt").is_file():
        return load_model(out / f"{arch}.pt")[0], f"trained {epochs} epochs (earlier run)"
    run = train.run(
        arch=arch,
        data_dir=data,
        epochs=epochs,
        model_path=str(out / f"{arch}.pt"),
        metrics_path=str(out / f"{arch}.json"),
        history_path=str(out / f"{arch}.csv"),
        checkpoint_dir=str(out / f"ckpt-{arch}"),
    )
    return run.model, f"trained {len(run.history)} epochs, val acc {run.metrics['val/acc']:.2f}"


def per_producer_terms(model, group, x, y) -> torch.Tensor:
    """``t_p`` for every producer p, image n, channel c: ``[P, N, C]`` (float64)."""
    modules = dict(model.named_modules())
    outputs, activations = [], []  # the graph's tensors, and copies an in-place add can't touch

    def keep(module, inputs, output):
        outputs.append(output)
        activations.append(output.detach().clone())

    hooks = [modules[name].register_forward_hook(keep) for name in group.score_points]
    try:
        logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    # sum over the batch of per-image losses: each image's gradient is its own
    grads = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), outputs)
    pairs = zip(activations, grads, strict=True)
    return torch.stack([(a * g).mean(dim=(2, 3)) for a, g in pairs])


def measure(model, groups, x, y, *, channels: int, rng) -> list[dict]:
    rows = []
    with torch.no_grad():
        base = F.cross_entropy(model(x), y).item()
    for group in groups:
        if len(group.score_points) < 2:
            continue
        t = per_producer_terms(model, group, x, y)
        forms = {"sum_abs": t.abs().sum(0).mean(0), "abs_sum": t.sum(0).abs().mean(0)}
        picked = rng.choice(group.size, size=min(channels, group.size), replace=False)
        actual = []
        with torch.no_grad():
            for c in picked:
                with zero_channels(model, {group.name: [int(c)]}, groups=[group]):
                    actual.append(F.cross_entropy(model(x), y).item() - base)
        actual = np.abs(actual)
        row = {"group": group.name, "producers": len(group.score_points), "channels": len(picked)}
        for name, score in forms.items():
            row[name] = float(spearmanr(score.numpy()[picked], actual).statistic)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="build/nbval/data/processed")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--channels", type=int, default=32, help="channels sampled per group")
    args = parser.parse_args()
    torch.manual_seed(0)
    out = Path("build/group_score_form")
    results = {}
    for arch in ("mobilenet_v2", "resnet50"):
        model, origin = baseline(arch, args.data, args.epochs, out)
        model = model.eval()
        data = train.training_data(args.data)
        images, labels, _ = next(
            iter(torch.utils.data.DataLoader(data.train_set, batch_size=32, shuffle=False))
        )
        x = data.eval_transform(images, None)
        groups = prunable_groups(model, example_input=x[:1])
        rows = measure(
            model, groups, x, labels, channels=args.channels, rng=np.random.default_rng(0)
        )
        summary = {k: float(np.mean([r[k] for r in rows])) for k in ("sum_abs", "abs_sum")}
        results[arch] = {"model": origin, "groups": rows, "mean_spearman": summary}
        print(arch, origin, summary)
    (HERE / "group_score_form.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
