"""Filter pruning: score channels, remove them physically, and the iterative loop of the papers.

Three modules, one concept each (the layout of Torch-Pruning, whose dependency graph does the
tracing underneath):

``scoring``
    Filter importance: :class:`ImportanceAccumulator` and the :data:`CRITERIA`
    (``taylor_activation``, ``taylor_weight``, ``l1_norm``, ``random``, ``none``);
    :func:`taylor_prediction_check` sets the first-order prediction against measured removals.
``surgery``
    Which channels must go together (:class:`ChannelGroup`, :func:`prunable_groups`) and
    removing them in place (:func:`remove_channels`); :func:`zero_channels` for the masked
    original; :func:`save_model` / :func:`load_model` for pruned networks.
``loop``
    The iterative loop (:func:`prune_iteratively`): score, remove the weakest filters, evaluate,
    fine-tune, checkpoint; :func:`select_channels` ranks all groups together.

The public names of all three are importable from here: ``from facepruning.pruning import
prune_iteratively, prunable_groups``.
"""

from .loop import PruningResult, prune_iteratively, select_channels
from .scoring import (
    CRITERIA,
    ImportanceAccumulator,
    TaylorCheck,
    normalize_per_group,
    taylor_prediction_check,
)
from .surgery import (
    ChannelGroup,
    channel_layout,
    load_model,
    prunable_groups,
    remove_channels,
    save_model,
    zero_channels,
)

__all__ = [
    # scoring
    "CRITERIA",
    "ImportanceAccumulator",
    "normalize_per_group",
    "TaylorCheck",
    "taylor_prediction_check",
    # surgery
    "ChannelGroup",
    "prunable_groups",
    "remove_channels",
    "zero_channels",
    "channel_layout",
    "save_model",
    "load_model",
    # loop
    "PruningResult",
    "select_channels",
    "prune_iteratively",
]
