"""Filter pruning for any CNN: criteria, the engine that scores and removes, the loops.

Modules, one concept each (the layout of Torch-Pruning, whose dependency graph does the tracing
underneath):

``importance``
    The criteria, one class each behind one interface (:class:`Importance`):
    :class:`TaylorActivation` (the papers'), :class:`TaylorWeight`, :class:`L1Norm`,
    :class:`RandomImportance`, and the :data:`IMPORTANCES` registry of their names.
``scoring``
    :class:`ImportanceAccumulator` runs a criterion over mini-batches (hooks, gradients,
    layer-wise normalisation); :func:`taylor_prediction_check` sets the first-order prediction
    against measured removals.
``surgery``
    Which channels must go together (:class:`ChannelGroup`, :func:`prunable_groups`) and
    removing them in place (:func:`remove_channels`); :func:`zero_channels` for the masked
    original.
``oneshot``
    :func:`prune`: one call, any network.
``loop``
    :func:`prune_iteratively`: the papers' iterative loop for any network (score, remove,
    fine-tune, checkpoint); :func:`select_channels` ranks all groups together.

Saving and loading pruned networks is :mod:`facepruning.models.io` (``save_pruned``,
``load_pruned``). Everything public is importable from here: ``from facepruning.pruning import
prune, Importance``.
"""

from .importance import (
    IMPORTANCES,
    Captured,
    Importance,
    L1Norm,
    RandomImportance,
    TaylorActivation,
    TaylorWeight,
    importance_of,
)
from .loop import (
    PruningResult,
    channels_per_step,
    default_score_pass,
    prune_iteratively,
    select_channels,
)
from .oneshot import Pruned, PruneReport, prune
from .scoring import (
    ImportanceAccumulator,
    TaylorCheck,
    example_groups,
    normalize_per_group,
    taylor_prediction_check,
)
from .surgery import ChannelGroup, prunable_groups, remove_channels, zero_channels

__all__ = [
    # importance
    "Importance",
    "Captured",
    "TaylorActivation",
    "TaylorWeight",
    "L1Norm",
    "RandomImportance",
    "IMPORTANCES",
    "importance_of",
    # scoring
    "ImportanceAccumulator",
    "normalize_per_group",
    "TaylorCheck",
    "taylor_prediction_check",
    "example_groups",
    # surgery
    "ChannelGroup",
    "prunable_groups",
    "remove_channels",
    "zero_channels",
    # one call, and the loop
    "prune",
    "Pruned",
    "PruneReport",
    "PruningResult",
    "channels_per_step",
    "default_score_pass",
    "select_channels",
    "prune_iteratively",
]
