"""Identification training of the face backbones, as in both papers.

The networks learn to tell the training identities apart (softmax cross-entropy); their pooled
features then serve as face descriptors for verification of unseen identities. Optimiser and
schedule follow the papers: SGD with momentum, the learning rate stepping down through
0.01 -> 0.005 -> 0.001 -> 0.0001 each time the validation loss stops improving
(:class:`PlateauSchedule`).

Every random draw of an epoch (shuffling, crops, flips, dropout) comes from a seed derived from
``(seed, epoch)``. Training is therefore deterministic on CPU for a seed, and a run interrupted at
any point resumes from its last checkpoint to exactly the weights an uninterrupted run reaches.

Under ``torchrun`` (several processes, see :mod:`facepruning.distributed`) the same functions train
data-parallel: each rank takes its shard of the same global batches, BatchNorm is synchronised,
and only rank 0 writes checkpoints; the checkpoints are the same as single-process ones.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed
from .checkpoint import RunCheckpoint
from .errors import ParameterError
from .parameters import TrainParameters
from .progress import progress_bar
from .verification import (
    MAX_IMPOSTORS,
    all_pairs,
    eer,
    flatten_report,
    identification_accuracy,
    pair_scores,
    verification_report,
)

__all__ = [
    "PlateauSchedule",
    "epoch_generator",
    "make_loader",
    "epoch_batches",
    "shuffled_loader",
    "train_epoch",
    "recalibrate_batchnorm",
    "train_identification",
    "evaluate_identification",
    "extract_descriptors",
    "evaluate_face_model",
    "heldout_eer",
]

PAPER_LR_LEVELS = (0.01, 0.005, 0.001, 0.0001)


class PlateauSchedule:
    """Step through fixed learning-rate levels whenever the validation loss plateaus.

    After ``patience`` epochs without an improvement of at least ``min_delta`` (relative) on the
    best validation loss, the next level is taken. A plateau on the last level marks the schedule
    :attr:`finished`, which ends training early.
    """

    def __init__(
        self, levels: Sequence[float] = PAPER_LR_LEVELS, *, patience: int = 2, min_delta=1e-3
    ):
        if not levels or any(lr <= 0 for lr in levels):
            raise ParameterError(f"lr_levels must be positive learning rates, got {levels!r}")
        if patience < 1:
            raise ParameterError(f"patience must be at least 1 epoch, got {patience}")
        self.levels = [float(lr) for lr in levels]
        self.patience = patience
        self.min_delta = min_delta
        self.level = 0
        self.best = math.inf
        self.bad_epochs = 0
        self.finished = False

    @property
    def lr(self) -> float:
        return self.levels[self.level]

    def step(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; return True when the learning rate changed."""
        if val_loss < self.best * (1 - self.min_delta):
            self.best, self.bad_epochs = val_loss, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return False
        self.bad_epochs = 0
        if self.level + 1 < len(self.levels):
            self.level += 1
            return True
        self.finished = True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("level", "best", "bad_epochs", "finished")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator seeded from (seed, epoch, stream): the same draws however a run was resumed."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def make_loader(
    dataset: Dataset, *, batch_size: int, shuffle: bool, generator=None, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose order depends only on ``generator``."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        persistent_workers=False,
    )


def shuffled_loader(dataset: Dataset, *, batch_size: int, generator=None, num_workers: int = 0):
    """Shuffled mini-batches in the order of ``generator``: a :func:`make_loader` in a single
    process, this rank's :class:`~facepruning.distributed.ShardedLoader` of the same global
    batches under torch.distributed."""
    if distributed.info().distributed:
        return distributed.ShardedLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            num_workers=num_workers,
        )
    return make_loader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        num_workers=num_workers,
    )


def _to_device(batch, transform, generator, device, memory_format):
    images, labels = batch[0], batch[1]
    if isinstance(batch, distributed.ShardedBatch):
        x = batch.transform(transform, generator)
    else:
        x = transform(images, generator)
    x = x.to(device, memory_format=memory_format)
    return x, labels.to(device)


def train_epoch(
    model: nn.Module,
    batches: Iterable,
    optimizer: torch.optim.Optimizer | None,
    transform: Callable,
    *,
    generator: torch.Generator,
    channels_last: bool = True,
    after_backward: Callable[[], None] | None = None,
    progress: Any = None,
    before_backward: Callable[[float | None], None] | None = None,
) -> dict[str, float]:
    """One pass of SGD over ``batches``; returns mean loss and top-1 accuracy.

    ``after_backward`` runs between ``backward()`` and the optimiser step: where the filter
    scoring reads its gradients. With ``optimizer=None`` gradients are computed but no weight
    changes (scoring a frozen network). ``before_backward(scale)`` runs just before
    ``backward()`` with the number of images per unit of loss gradient: None for an ordinary
    batch (a mean loss), ``global batch / world size`` for a
    :class:`~facepruning.distributed.ShardedBatch`, whose loss is scaled so that DDP's average
    over ranks is the global batch mean. Under torch.distributed the returned loss and accuracy
    are over the global batches (summed over ranks).
    """
    model.train()
    device = next(model.parameters()).device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    total_loss, correct, seen = 0.0, 0, 0
    for batch in batches:
        x, y = _to_device(batch, transform, generator, device, fmt)
        model.zero_grad(set_to_none=True)
        logits = model(x)
        if isinstance(batch, distributed.ShardedBatch):
            summed = nn.functional.cross_entropy(logits, y, reduction="sum")
            loss, batch_loss, scale = summed * batch.loss_scale, summed.item(), 1 / batch.loss_scale
        else:
            loss = nn.functional.cross_entropy(logits, y)
            batch_loss, scale = loss.item() * len(y), None
        if before_backward is not None:
            before_backward(scale)
        loss.backward()
        if after_backward is not None:
            after_backward()
        if optimizer is not None:
            optimizer.step()
        total_loss += batch_loss
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / max(seen, 1):.3f}")
    if distributed.info().distributed:
        totals = torch.tensor([total_loss, correct, seen], dtype=torch.float64)
        total_loss, correct, seen = distributed.all_reduce_sum(totals).tolist()
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1)}


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable,
    transform: Callable,
    *,
    generator: torch.Generator,
    channels_last: bool = True,
) -> int:
    """Re-estimate every BatchNorm's running statistics from ``batches``; weights stay as they are.

    After filters are removed, the running statistics of the layers downstream still describe
    the larger network. Resetting them and averaging the batch statistics of a few training
    batches (a cumulative average: momentum None) describes the network as it now is, which is
    what further training would do anyway. Returns the number of batches used; with none, the
    statistics are left untouched.
    """
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return 0
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    device = next(model.parameters()).device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    used = 0
    for batch in itertools.chain([first], batches):
        x, _ = _to_device(batch, transform, generator, device, fmt)
        model(x)
        used += 1
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return used


@torch.inference_mode()
def _forward_all(model, dataset, transform, batch_size, fn):
    model.eval()
    device = next(model.parameters()).device
    outs, labels, indices = [], [], []
    for batch in make_loader(dataset, batch_size=batch_size, shuffle=False):
        x = transform(batch[0], None).to(device)
        out = fn(x)  # a tensor, or a tuple of them (embed_and_classify)
        outs.append([o.float().cpu() for o in (out if isinstance(out, tuple) else (out,))])
        labels.append(batch[1])
        indices.append(batch[2])
    joined = [torch.cat(parts) for parts in zip(*outs, strict=True)]
    return (joined[0] if len(joined) == 1 else tuple(joined)), torch.cat(labels), torch.cat(indices)


def evaluate_identification(
    model: nn.Module, dataset: Dataset, transform: Callable, *, batch_size: int = 64
) -> dict[str, float]:
    """Closed-set loss and top-1 accuracy on labelled images (the validation split)."""
    logits, labels, _ = _forward_all(model, dataset, transform, batch_size, model)
    loss = nn.functional.cross_entropy(logits, labels).item()
    return {"loss": loss, "acc": identification_accuracy(logits, labels)}


def extract_descriptors(
    model: nn.Module, dataset: Dataset, transform: Callable, *, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face descriptors (``model.embed``) of every image, and their manifest indices."""
    desc, _, indices = _forward_all(model, dataset, transform, batch_size, model.embed)
    return desc, indices


def heldout_eer(
    descriptors: Any, identities: Any, *, max_impostors: int | None = MAX_IMPOSTORS, seed: int = 0
) -> float | None:
    """1-image EER over the pairs of ``descriptors`` (every genuine pair, at most
    ``max_impostors`` impostor pairs): on the validation images of the training identities, a
    verification measure that never sees the test identities, so that a choice made on it (the
    SqueezerFaceNet pick) can be judged on them. None without pairs of both kinds."""
    i, j, genuine = all_pairs(identities, max_impostors=max_impostors, seed=seed)
    if not genuine.any() or genuine.all():
        return None
    return eer(pair_scores(descriptors, i, j), genuine)


def evaluate_face_model(
    model: nn.Module,
    *,
    val_set: Dataset,
    test_set: Dataset,
    manifest,
    transform: Callable,
    pairs=None,
    template_sizes: Sequence[int] = (1, 5),
    batch_size: int = 64,
    with_pair_scores: bool = False,
) -> dict[str, Any]:
    """Validation identification plus open-set verification on the test identities.

    Returns a flat dict: ``val/loss``, ``val/acc``, ``val/t1/eer`` (:func:`heldout_eer`),
    ``descriptor_size`` and the verification
    report's keys (``t1/eer``, ``t5/tar@far=0.01``, ``lfw/accuracy_mean``, ``pose/F-P/eer``, ...).
    ``with_pair_scores`` adds ``pair_scores``: every template block's pair scores and identity
    codes as tensors (see :func:`~facepruning.verification.verification_report`), for the
    identity bootstrap of notebook 04, and ``test_identities``, the identities the codes index.
    """
    (val_desc, logits), labels, val_indices = _forward_all(
        model, val_set, transform, batch_size, model.embed_and_classify
    )  # one pass: identification and held-out verification
    val_ids = manifest.set_index("index").loc[val_indices.numpy(), "identity"].to_numpy()
    metrics = {
        "val/loss": nn.functional.cross_entropy(logits, labels).item(),
        "val/acc": identification_accuracy(logits, labels),
        "val/t1/eer": heldout_eer(val_desc, val_ids),
    }
    desc, indices = extract_descriptors(model, test_set, transform, batch_size=batch_size)
    rows = manifest.set_index("index").loc[indices.numpy()]
    extra = {}
    if pairs is not None:
        position = {int(i): p for p, i in enumerate(indices.tolist())}
        pairs = pairs.assign(a=pairs["a"].map(position), b=pairs["b"].map(position))
        extra["pairs"] = pairs
    if "pose" in rows.columns and rows["pose"].notna().all():
        extra["poses"] = rows["pose"].tolist()
        extra["template_ids"] = rows["template"].tolist()
    pairs_out: dict[str, dict[str, Any]] | None = {} if with_pair_scores else None
    identities = rows["identity"].tolist()
    report = verification_report(
        desc, identities, template_sizes=tuple(template_sizes), pair_scores_out=pairs_out, **extra
    )
    metrics["descriptor_size"] = int(desc.shape[1])
    metrics.update(flatten_report(report))
    if pairs_out is not None:
        metrics["test_identities"] = sorted(set(identities))
        metrics["pair_scores"] = {
            block: {
                "scores": torch.as_tensor(p["scores"], dtype=torch.float32),
                "a": torch.as_tensor(p["a"], dtype=torch.int64),
                "b": torch.as_tensor(p["b"], dtype=torch.int64),
                "genuine": torch.as_tensor(p["genuine"], dtype=torch.bool),
            }
            for block, p in pairs_out.items()
        }
    return metrics


@dataclass
class _Data:
    train_set: Dataset
    val_set: Dataset
    train_transform: Callable
    eval_transform: Callable


def train_identification(
    model: nn.Module,
    *,
    train_set: Dataset,
    val_set: Dataset,
    train_transform: Callable,
    eval_transform: Callable,
    config: TrainParameters,
    checkpoint_dir: str | Path | None = None,
    run_identity: Mapping[str, Any] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place for identification; return the per-epoch history.

    With ``checkpoint_dir``, the state after every epoch is saved to ``last.pt`` (atomically)
    with ``run_identity`` (a JSON-able dict of everything that determines the result:
    parameters, data, initial weights) and its :func:`~facepruning.artifacts.fingerprint`; a
    later call with the same identity resumes after the last finished epoch. A checkpoint of
    another identity is moved aside to ``last.<its fingerprint>.pt``, with one line naming the
    parameters that changed, and training starts over.

    Under torch.distributed every rank calls this with the same arguments: the model is trained
    data-parallel (:func:`~facepruning.distributed.data_parallel`), rank 0 writes the checkpoint
    (a plain state dict, resumable on any number of processes) and the validation metrics of
    rank 0 drive every rank's schedule.
    """
    checkpoint = RunCheckpoint.in_folder(
        checkpoint_dir, run_identity, remedy="the training (it starts again from epoch 0)"
    )
    data = _Data(train_set, val_set, train_transform, eval_transform)
    if config.channels_last:  # before wrapping: DDP's gradient buckets follow the layout
        model.to(memory_format=torch.channels_last)
    with distributed.data_parallel(model) as net:
        return _train_identification(
            model, net, data, config, checkpoint, progress=progress, on_epoch_end=on_epoch_end
        )


def _train_identification(
    model,
    net,
    data: _Data,
    config: TrainParameters,
    checkpoint: RunCheckpoint,
    *,
    progress,
    on_epoch_end,
):
    schedule = PlateauSchedule(config.lr_levels, patience=config.patience)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=schedule.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    history, start = [], 0
    state = checkpoint.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, start = list(state["history"]), state["epoch"] + 1
    progress = progress and distributed.is_main()
    epochs = progress_bar(range(config.epochs), desc="epochs", disable=not progress, initial=start)
    for epoch in range(start, config.epochs):
        if schedule.finished:
            break
        row = _one_epoch(model, net, data, config, optimizer, schedule, epoch, progress=progress)
        schedule.step(row["val_loss"])
        row["schedule_finished"] = schedule.finished  # plateaued on the last level: converged
        history.append(row)
        checkpoint.save(
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "history": history,
            }
        )
        if on_epoch_end is not None:
            on_epoch_end(row)
        epochs.update(1)
        epochs.set_postfix(val_loss=f"{row['val_loss']:.3f}", val_acc=f"{row['val_acc']:.2f}")
    epochs.close()
    return history


def _one_epoch(model, net, data: _Data, config, optimizer, schedule, epoch, *, progress):
    """Train one epoch at the schedule's learning rate, validate; return the history row."""
    here = distributed.info()
    for group in optimizer.param_groups:
        group["lr"] = schedule.lr
    torch.manual_seed(config.seed * 1_000_003 + epoch + here.rank * 7_919)  # dropout
    loader = shuffled_loader(
        data.train_set,
        batch_size=config.batch_size,
        generator=epoch_generator(config.seed, epoch, 0),
        num_workers=config.num_workers,
    )
    tic = time.perf_counter()
    with progress_bar(
        total=len(loader), desc=f"epoch {epoch}", leave=False, disable=not progress
    ) as bar:
        train = train_epoch(
            net,
            loader,
            optimizer,
            data.train_transform,
            generator=epoch_generator(config.seed, epoch, 1),
            channels_last=config.channels_last,
            progress=bar,
        )
    # Rank 0 evaluates (the weights are the same on every rank) and tells the others.
    val = distributed.broadcast_object(
        evaluate_identification(model, data.val_set, data.eval_transform) if here.is_main else None
    )
    return {
        "epoch": epoch,
        "lr": schedule.lr,
        "train_loss": train["loss"],
        "train_acc": train["acc"],
        "val_loss": val["loss"],
        "val_acc": val["acc"],
        "seconds": time.perf_counter() - tic,
    }


def epoch_batches(
    dataset: Dataset, *, batch_size: int, seed: int, epoch: int, num_workers: int = 0
) -> Iterator:
    """Shuffled mini-batches, endlessly, starting at ``epoch``: the order depends only on
    ``(seed, epoch)``, so a resumed run draws the same batches."""
    while True:
        yield from shuffled_loader(
            dataset,
            batch_size=batch_size,
            generator=epoch_generator(seed, epoch, 0),
            num_workers=num_workers,
        )
        epoch += 1
