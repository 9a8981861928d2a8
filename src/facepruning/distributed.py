"""Several processes, one run: data-parallel training and pruning with ``torch.distributed``.

Launch with ``torchrun`` (``env://`` initialisation); the same code runs unchanged as a single
process, where every function here is a no-op. What makes N processes equivalent to one:

* **The same global batches.** :class:`ShardedLoader` draws the global order exactly as the
  single-process :func:`~facepruning.training.make_loader` does from the same generator
  (:func:`~facepruning.training.epoch_generator`), cuts each global batch into ``world_size``
  contiguous shards, and gives rank ``r`` shard ``r`` (a :class:`ShardedBatch` that remembers its
  place in the global batch). The random crops and flips are drawn for the whole global batch
  (:meth:`ShardedBatch.transform`), so every image gets the augmentation it gets single-process.
* **The same gradient.** The loss of a shard is ``sum(loss_i) * world_size / global_batch``, so
  that DDP's average over ranks is the single-process mean over the global batch, also when the
  last batch of an epoch does not split evenly.
* **The same BatchNorm.** BatchNorm layers are synchronised while wrapped (:func:`data_parallel`):
  :class:`torch.nn.SyncBatchNorm` on GPUs; on CPU (gloo), where PyTorch has no SyncBatchNorm
  kernels, :class:`CPUSyncBatchNorm2d`, which all-reduces the batch statistics inside autograd.
  Batch statistics are then those of the global batch, as in a single process.
* **The same filters removed.** Taylor score sums and counts are summed over ranks
  (:func:`all_reduce_importance`) before ranking, so every rank removes the same channels; the
  DDP wrapper is rebuilt after each removal (the parameters changed).
* **One writer.** Only rank 0 writes outputs and checkpoints (:func:`is_main`); the others wait
  at a :func:`barrier`. Checkpoints are plain state dicts of the unwrapped network, so a run
  resumes on any number of processes.

Dropout masks are drawn per rank (each from the epoch's seed offset by the rank), so with dropout
active N processes match one in distribution, not bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .errors import ParameterError

__all__ = [
    "DistInfo",
    "info",
    "init_from_env",
    "shutdown",
    "is_main",
    "barrier",
    "broadcast_object",
    "all_reduce_sum",
    "default_device",
    "ShardedBatch",
    "ShardedLoader",
    "CPUSyncBatchNorm2d",
    "convert_sync_batchnorm",
    "revert_sync_batchnorm",
    "data_parallel",
    "all_reduce_importance",
    "state_digest",
    "check_same_across_ranks",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank, number of processes, local rank, backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def info() -> DistInfo:
    """The current process group (rank 0 of 1 when torch.distributed is not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        backend=str(dist.get_backend()),
    )


def init_from_env(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...).

    Does nothing without torchrun (``WORLD_SIZE`` unset or 1) or when already initialised.
    ``backend`` defaults to nccl when CUDA is available, gloo otherwise.
    """
    if dist.is_available() and dist.is_initialized():
        return info()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    if not dist.is_available():
        raise ParameterError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend, init_method="env://")
    return info()


def shutdown() -> None:
    """Leave the process group (no-op when none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0, and in a single process: the one that writes files."""
    return info().is_main


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if info().distributed:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects; returns ``obj`` single-process)."""
    if not info().distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (it travels on the backend's device)."""
    if not info().distributed:
        return tensor
    device = _comm_device()
    moved = tensor.to(device)
    dist.all_reduce(moved, op=dist.ReduceOp.SUM)
    if moved is not tensor:
        tensor.copy_(moved.to(tensor.device))
    return tensor


def _comm_device() -> torch.device:
    if info().backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def default_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, otherwise the CPU."""
    if torch.cuda.is_available():
        return torch.device(
            "cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count()
        )
    return torch.device("cpu")


# -- data ------------------------------------------------------------------------------------
class ShardedBatch(NamedTuple):
    """One rank's share of a global batch: ``images, labels, indices`` like any batch, plus
    where the share starts in the global batch and how big that batch is."""

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    start: int
    global_size: int

    def transform(self, transform, generator: torch.Generator | None) -> torch.Tensor:
        """Apply a random batch transform as a single process would to the whole global batch,
        and keep this share's rows: the generator draws crops and flips for all images."""
        n = len(self.images)
        if self.global_size == n:
            return transform(self.images, generator)
        full = torch.zeros((self.global_size, *self.images.shape[1:]), dtype=self.images.dtype)
        full[self.start : self.start + n] = self.images
        return transform(full, generator)[self.start : self.start + n]

    @property
    def loss_scale(self) -> float:
        """Factor for the summed loss of this share so that DDP's mean over ranks is the
        single-process mean over the global batch."""
        return info().world_size / self.global_size


class _Indices(Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class ShardedLoader:
    """This rank's shards of the global batches a single-process DataLoader would produce.

    The global order comes from a DataLoader over the indices with the same ``batch_size``,
    ``shuffle`` and ``generator`` (so it consumes the generator exactly as
    :func:`~facepruning.training.make_loader` does); images are then read by a DataLoader with
    ``num_workers`` over this rank's shards only.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        num_workers: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        here = info()
        self.dataset = dataset
        self.rank = here.rank if rank is None else rank
        self.world_size = here.world_size if world_size is None else world_size
        self.num_workers = num_workers
        order = DataLoader(
            _Indices(len(dataset)), batch_size=batch_size, shuffle=shuffle, generator=generator
        )
        self.global_batches = [b for b in order]

    def __len__(self) -> int:
        return len(self.global_batches)

    def shards(self) -> list[tuple[list[int], int, int]]:
        """Per global batch: this rank's dataset indices, their start, the global size."""
        out = []
        for batch in self.global_batches:
            parts = torch.tensor_split(batch, self.world_size)
            start = sum(len(p) for p in parts[: self.rank])
            out.append((parts[self.rank].tolist(), start, len(batch)))
        return out

    def __iter__(self) -> Iterator[ShardedBatch]:
        shards = self.shards()
        nonempty = [idx for idx, _, _ in shards if idx]
        reader = iter(
            DataLoader(
                self.dataset,
                batch_sampler=nonempty,
                num_workers=self.num_workers,
                persistent_workers=False,
            )
        )
        empty = None
        for idx, start, size in shards:
            if idx:
                images, labels, indices = next(reader)[:3]
            else:  # a last global batch smaller than the number of ranks
                if empty is None:
                    images0 = self.dataset[0][0]
                    empty = (
                        torch.empty((0, *images0.shape), dtype=images0.dtype),
                        torch.empty(0, dtype=torch.long),
                        torch.empty(0, dtype=torch.long),
                    )
                images, labels, indices = empty
            yield ShardedBatch(images, labels, indices, start, size)


# -- BatchNorm -------------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of all ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch over all ranks.

    For CPU processes (gloo), where PyTorch's SyncBatchNorm has no kernels. Statistics are all-
    reduced by a differentiable sum (two passes: mean, then the variance around it): the
    backward pass sums the gradients of all ranks' losses, as SyncBatchNorm does. Evaluation
    mode and single processes: plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and info().distributed):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        dims = (0, 2, 3)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / max(x.shape[1], 1)])])
        total = all_reduce(local)
        count = total[-1]
        mean = total[:-1] / count
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.pow(2).sum(dims)) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Make every ``BatchNorm2d`` of ``model`` synchronised, in place (the module objects and
    their parameters stay the same: only their class changes); returns how many."""
    n = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            if next(module.parameters(), module.running_mean).is_cuda:
                module.process_group = None
                module.__class__ = nn.SyncBatchNorm
            else:
                module.__class__ = CPUSyncBatchNorm2d
            n += 1
    return n


def revert_sync_batchnorm(model: nn.Module) -> None:
    """Undo :func:`convert_sync_batchnorm`: plain BatchNorm2d again, same parameters."""
    for module in model.modules():
        if type(module) in (nn.SyncBatchNorm, CPUSyncBatchNorm2d):
            module.__class__ = nn.BatchNorm2d
            if hasattr(module, "process_group"):
                del module.process_group


@contextlib.contextmanager
def data_parallel(model: nn.Module) -> Iterator[nn.Module]:
    """Yield ``model`` wrapped for data-parallel training (DDP with synchronised BatchNorm), or
    ``model`` itself in a single process. On exit the BatchNorm layers are plain again; wrap
    anew after changing the parameters (channel removal)."""
    here = info()
    if not here.distributed:
        yield model
        return
    from torch.nn.parallel import DistributedDataParallel

    convert_sync_batchnorm(model)
    try:
        device = next(model.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        yield DistributedDataParallel(model, device_ids=ids, output_device=None)
    finally:
        revert_sync_batchnorm(model)


# -- scoring ---------------------------------------------------------------------------------
def all_reduce_importance(accumulator) -> None:
    """Sum an :class:`~facepruning.scoring.ImportanceAccumulator`'s raw sums and count over
    ranks, so that every rank ranks the same scores (no-op in a single process)."""
    if not info().distributed:
        return
    sums = accumulator.raw_sums()
    names = list(sums)
    flat = torch.cat(
        [sums[n].double() for n in names] + [torch.tensor([accumulator.count], dtype=torch.float64)]
    )
    all_reduce_sum(flat)
    out, pos = {}, 0
    for n in names:
        out[n] = flat[pos : pos + len(sums[n])].clone()
        pos += len(sums[n])
    accumulator.load_raw_sums(out, count=int(round(float(flat[-1]))))


# -- checks ----------------------------------------------------------------------------------
def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, shapes, bytes): equal networks, equal digests."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def check_same_across_ranks(model: nn.Module) -> bool:
    """True when every rank holds exactly the same network (always true single-process)."""
    if not info().distributed:
        return True
    digests = [None] * info().world_size
    dist.all_gather_object(digests, state_digest(model))
    return len(set(digests)) == 1
