"""The channel-rounding rule of a pruning step, declared once for the loop and for its null.

With ``channel_multiple`` m > 1 every group keeps a multiple of m channels: :func:`floor` is the
fewest a group may keep, :func:`rounded_share` turns a group's share of a step into the two sizes
it may round to. :func:`facepruning.pruning.select_channels` applies them to one step's scores;
:func:`facepruning.statistics.width_null` to many simulated steps at once. Both take plain ints
or numpy arrays (element-wise), so the simulation cannot drift from the loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["floor", "rounded_share"]


def floor(size: Any, min_channels: int, multiple: int) -> Any:
    """The fewest channels a group of ``size`` may keep: ``min_channels`` (at least one) rounded
    up to a multiple of ``multiple``; a group narrower than ``multiple`` keeps all its channels."""
    keep = max(-(-max(min_channels, 1) // multiple) * multiple, multiple)
    return np.where(np.asarray(size) < multiple, size, np.minimum(size, keep))


def rounded_share(size: Any, share: Any, multiple: int, cap: Any) -> tuple[Any, Any]:
    """A group of ``size`` channels asked to lose ``share``: the removal rounded down to land on a
    multiple of ``multiple`` (``down``), and the next larger such removal within ``cap`` (``up``).
    A size not yet on a multiple first drops by ``size % multiple``."""
    size, share = np.asarray(size), np.asarray(share)
    offset = size % multiple  # removals that land on a multiple: offset + j * multiple
    down = np.where((share < offset) | (share == 0), 0, share - (share - offset) % multiple)
    up = np.minimum(down + np.where((down == 0) & (offset > 0), offset, multiple), cap)
    return down, up
