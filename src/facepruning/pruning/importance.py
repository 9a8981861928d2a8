"""Filter-importance criteria: one class per criterion behind one small interface.

An :class:`Importance` turns what the engine captured on one mini-batch into one score per channel
of a :class:`~facepruning.pruning.surgery.ChannelGroup` (the lower, the less the loss is expected
to change when the channel goes). The engine (:class:`~facepruning.pruning.scoring.
ImportanceAccumulator`) adds the scores up over the mini-batches of a step and divides by their
count (images or mini-batches); a criterion that needs no data is asked once. Scores are kept in
float64.

Write your own by subclassing; nothing in the package needs editing::

    class FilterNorm(Importance):
        '''L2 norm of each channel's filters.'''
        label = "filter L2 norm"
        needs_data = False

        def __call__(self, group, captured):
            return sum(captured.modules[c].weight.detach().flatten(1).norm(dim=1).double()
                       for c in group.convs)

    facepruning.prune(model, x, importance=FilterNorm(), amount=0.3, ignored=[model.fc])

The criteria the pipeline uses by name are the :data:`IMPORTANCES` registry, declared once here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..errors import PruningError
from .surgery import ChannelGroup

__all__ = [
    "Captured",
    "Importance",
    "TaylorActivation",
    "TaylorWeight",
    "L1Norm",
    "RandomImportance",
    "IMPORTANCES",
    "importance_of",
]


@dataclass
class Captured:
    """What the engine hands a criterion for one mini-batch (or, without data, once).

    ``modules``: the network's modules by qualified name (weights and, after backward, their
    ``.grad``). ``activations``: for criteria with ``needs_activations``, one ``(activation,
    gradient)`` pair per score point of the group, the activation copied where the channel leaves
    its producer and the gradient of the mini-batch's loss with respect to it, in the order the
    gradients arrived. ``grad_scale``: the factor that turns that gradient into per-image loss
    gradients (the batch size for a mean loss). ``batch_size``: images in the mini-batch (0 when
    no data is scored). ``generator``: for criteria that draw random numbers.
    """

    modules: Mapping[str, nn.Module]
    activations: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    grad_scale: float = 1.0
    batch_size: int = 0
    generator: torch.Generator | None = None


class Importance:
    """Base class of the criteria: ``importance(group, captured)`` returns one float64 score per
    channel of ``group``, what one mini-batch contributes (or, with ``needs_data = False``, the
    scores themselves).

    Class attributes say what the engine must provide: ``needs_data`` (score over mini-batches:
    forward and backward passes), ``needs_activations`` (hook the group's score points and hand
    over activations and their gradients), ``per_image`` (the contributions are sums over images,
    so the engine divides by the number of images rather than of mini-batches), ``normalizable``
    (whether layer-wise normalisation may be applied: not for random draws). ``name`` is the key
    in :data:`IMPORTANCES`; ``label`` the name figures and tables show.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    needs_data: ClassVar[bool] = True
    needs_activations: ClassVar[bool] = False
    per_image: ClassVar[bool] = False
    normalizable: ClassVar[bool] = True

    def __call__(self, group: ChannelGroup, captured: Captured) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(group, captured)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TaylorActivation(Importance):
    """First-order Taylor expansion of the loss on the activations (the papers' criterion).

    Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference",
    ICLR 2017; MATLAB's ``taylorPrunableNetwork``, which the papers used. Removing channel ``c``
    sets its feature map ``a`` to zero; to first order the loss changes by ``-sum_{h,w} a *
    dL/da``. Per image the score is ``|mean_{h,w} a * dL/da|`` at each point where the channel
    leaves its producer (after the BatchNorm that follows a conv, since that is what removal
    zeroes), summed over a group's producers and averaged over the images of a step.

    Example::

        facepruning.prune(model, x, importance=TaylorActivation(), amount=0.2,
                          batches=loader, ignored=[model.fc])
    """

    name = "taylor_activation"
    label = "Taylor (activations)"
    needs_activations = True
    per_image = True

    def __call__(self, group: ChannelGroup, captured: Captured) -> torch.Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for activation, grad in captured.activations:
            contrib = (activation * grad).mean(dim=(2, 3)) * captured.grad_scale
            total += contrib.abs().sum(dim=0).double().cpu()
        return total


class TaylorWeight(Importance):
    """First-order Taylor expansion on the weights, per group: ``(sum_s w_s dL/dw_s)^2`` over
    every parameter ``s`` the channel owns (its filters and its BatchNorm's scale and shift),
    averaged over mini-batches.

    Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019.

    Example::

        facepruning.prune(model, x, importance=TaylorWeight(), amount=0.2, batches=loader,
                          ignored=[model.fc])
    """

    name = "taylor_weight"
    label = "Taylor (weights)"

    def __call__(self, group: ChannelGroup, captured: Captured) -> torch.Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)  # float64: terms cancel in the sum
        for name in dict.fromkeys((*group.convs, *group.score_points)):  # conv, then its BN
            module = captured.modules[name]
            for param in (module.weight, getattr(module, "bias", None)):
                if param is None or param.grad is None:
                    continue
                total += (param.detach() * param.grad).reshape(group.size, -1).sum(1).double().cpu()
        return total.pow(2)


class L1Norm(Importance):
    """The sum of absolute filter weights of each channel, over a group's producers.

    Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017. Needs no data.

    Example::

        facepruning.prune(model, x, importance=L1Norm(), amount=0.3, ignored=[model.fc])
    """

    name = "l1_norm"
    label = "L1 norm"
    needs_data = False

    def __call__(self, group: ChannelGroup, captured: Captured) -> torch.Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for name in group.convs:
            weight = captured.modules[name].weight.detach()
            total += weight.abs().reshape(group.size, -1).sum(1).double().cpu()
        return total


class RandomImportance(Importance):
    """Uniform random scores in [0, 1): the baseline any criterion must beat.

    Never normalised per layer: dividing by a group's L2 norm, about ``sqrt(width / 3)``, would
    make the channels of wide layers look weaker, and removal would no longer be uniform over
    channels. Draws from the engine's generator, so a seeded run repeats.

    Example::

        facepruning.prune(model, x, importance=RandomImportance(), amount=0.3,
                          ignored=[model.fc], seed=0)
    """

    name = "random"
    label = "random"
    needs_data = False
    normalizable = False

    def __call__(self, group: ChannelGroup, captured: Captured) -> torch.Tensor:
        return torch.rand(group.size, generator=captured.generator, dtype=torch.float64)


#: The criteria by name: what ``importance="..."`` and the pipeline's ``criterion`` resolve to.
IMPORTANCES: dict[str, type[Importance]] = {
    cls.name: cls for cls in (TaylorActivation, TaylorWeight, L1Norm, RandomImportance)
}


def importance_of(spec: str | Importance) -> Importance:
    """An :class:`Importance` from a registered name or an instance (returned as it is)."""
    if isinstance(spec, Importance):
        return spec
    if isinstance(spec, type) and issubclass(spec, Importance):
        return spec()
    if spec not in IMPORTANCES:
        raise PruningError(
            f"unknown importance {spec!r}: choose one of {sorted(IMPORTANCES)} or pass an "
            "instance of a facepruning.pruning.Importance subclass"
        )
    return IMPORTANCES[spec]()
