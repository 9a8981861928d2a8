"""Shared timing helper: interleaved repeats of the variants being compared.

Every comparison runs its variants round-robin (the order rotates each round), so a burst of
load from another process on a shared machine hits all variants alike instead of one of them.
Each variant is warmed up first (oneDNN primitive creation, allocator growth, ORT's first-run
setup), then calibrated: a *sample* is ``inner`` back-to-back calls, with ``inner`` chosen so a
sample lasts at least ``min_sample_s``. Reported figures are per call: median, quartiles, IQR,
min and max over the ``repeats`` samples.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Stats", "compare", "summarize", "time_once"]


@dataclass
class Stats:
    """Per-call seconds of one variant over ``repeats`` samples of ``inner`` calls each."""

    median: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float
    repeats: int
    inner: int

    @property
    def spread(self) -> float:
        """IQR relative to the median (0.05 = the middle half of samples lies within 5%)."""
        return self.iqr / self.median if self.median > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["spread"] = self.spread
        return d


def summarize(samples: list[float], inner: int = 1) -> Stats:
    """Median, quartiles and range of per-call times."""
    s = sorted(samples)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return Stats(
        median=statistics.median(s),
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        min=s[0],
        max=s[-1],
        repeats=len(s),
        inner=inner,
    )


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds taken by one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(
    variants: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    min_sample_s: float = 0.05,
    max_inner: int = 200,
) -> dict[str, Stats]:
    """Time every variant ``repeats`` times, interleaved; return per-call :class:`Stats`.

    ``warmup`` untimed calls of each variant come first (at least one, which also calibrates
    ``inner``: the number of calls in one timed sample, so that a sample lasts ``min_sample_s``).
    """
    names = list(variants)
    inner: dict[str, int] = {}
    for name in names:
        fn = variants[name]
        t = time_once(fn)
        for _ in range(max(warmup, 1) - 1):
            t = min(t, time_once(fn))
        inner[name] = max(1, min(max_inner, math.ceil(min_sample_s / max(t, 1e-9))))
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            fn, n = variants[name], inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
    return {n: summarize(samples[n], inner[n]) for n in names}
