"""channel_multiple: after a pruning step every layer keeps a multiple of m channels, chosen by
the same global ranking; m = 1 is the plain selection."""

from __future__ import annotations

import pytest
import torch

from facepruning.errors import ParameterError, PruningError
from facepruning.parameters import PruneParameters
from facepruning.pruning.loop import select_channels


def random_scores(seed: int, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(n, generator=g, dtype=torch.float64) for name, n in sizes.items()}


def reference_selection(scores, *, count, min_channels=1):
    """The selection before channel_multiple existed (a copy of the old code)."""
    names = list(scores)
    flat = torch.cat([scores[n].double() for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    local = torch.cat([torch.arange(len(scores[n])) for n in names])
    left = {n: len(scores[n]) for n in names}
    plan = {}
    for pos in torch.argsort(flat, stable=True).tolist():
        if count == 0:
            break
        name = names[int(owner[pos])]
        if left[name] <= min_channels:
            continue
        plan.setdefault(name, []).append(int(local[pos]))
        left[name] -= 1
        count -= 1
    return {n: sorted(idx) for n, idx in plan.items()}


SIZES = {"a": 64, "b": 100, "c": 24, "d": 5, "e": 17, "f": 8}


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("count", [1, 7, 20, 60])
@pytest.mark.parametrize("min_channels", [1, 3])
def test_multiple_of_one_is_the_old_selection(seed, count, min_channels):
    scores = random_scores(seed, SIZES)
    # ties too: quantised scores
    tied = {n: (s * 4).floor() for n, s in scores.items()}
    for s in (scores, tied):
        expected = reference_selection(s, count=count, min_channels=min_channels)
        assert select_channels(s, count=count, min_channels=min_channels) == expected
        got = select_channels(s, count=count, min_channels=min_channels, channel_multiple=1)
        assert got == expected


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("count", [1, 5, 13, 40, 100])
def test_every_group_keeps_a_multiple_of_eight(seed, count):
    m = 8
    scores = random_scores(seed, SIZES)
    plan = select_channels(scores, count=count, channel_multiple=m)
    removed = sum(len(v) for v in plan.values())
    assert count <= removed <= count + m - 1
    for name, n in SIZES.items():
        left = n - len(plan.get(name, []))
        if n < m:
            assert name not in plan  # below the multiple: left as it is
        else:
            assert left >= m
            assert left % m == 0 or name not in plan, (name, n, left)
        # each group loses its own lowest channels
        if name in plan:
            order = torch.argsort(scores[name], stable=True)[: len(plan[name])]
            assert sorted(order.tolist()) == plan[name]


def test_the_lowest_group_loses_whole_multiples_first():
    low = torch.linspace(0.0, 0.1, 32, dtype=torch.float64)
    high = torch.linspace(0.5, 1.0, 32, dtype=torch.float64)
    scores = {"strong": high, "weak": low, "strong2": high.flip(0)}
    assert select_channels(scores, count=8, channel_multiple=8) == {"weak": list(range(8))}
    # 10 asked: the weak group's share (10) rounds up to 16, nothing else goes
    assert select_channels(scores, count=10, channel_multiple=8) == {"weak": list(range(16))}
    # the weak group can give at most 24 (it keeps 8): the rest comes from the next lowest
    plan = select_channels(scores, count=30, channel_multiple=8)
    assert plan["weak"] == list(range(24))
    assert sum(len(v) for v in plan.values()) == 32
    assert set(plan) == {"weak", "strong"} or set(plan) == {"weak", "strong2"}


def test_a_group_off_the_multiple_first_drops_to_one():
    scores = {"odd": torch.arange(20, dtype=torch.float64), "even": 100 + torch.arange(16.0)}
    plan = select_channels(scores, count=3, channel_multiple=8)
    assert plan == {"odd": [0, 1, 2, 3]}  # 20 -> 16: the smallest removal that lands on 8s
    plan = select_channels(scores, count=5, channel_multiple=8)
    assert plan == {"odd": list(range(12))}  # 20 -> 8


def test_min_channels_rounds_up_to_the_multiple():
    scores = {"a": torch.arange(32, dtype=torch.float64)}
    plan = select_channels(scores, count=12, min_channels=9, channel_multiple=8)
    assert len(plan["a"]) == 16  # keeps 16: the smallest multiple of 8 that is >= 9
    with pytest.raises(PruningError, match="multiple of 8"):
        select_channels(scores, count=17, min_channels=9, channel_multiple=8)


def test_parameter_is_declared_and_checked():
    assert PruneParameters().channel_multiple == 1
    assert PruneParameters(channel_multiple=8).channel_multiple == 8
    with pytest.raises(ParameterError, match="channel_multiple"):
        PruneParameters(channel_multiple=0)
