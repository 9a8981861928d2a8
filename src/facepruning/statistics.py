"""Uncertainty of verification metrics on a small test set: identity bootstrap, paired intervals.

The test set holds few identities (10 for ORL) and every verification pair involves one or two of
them, so pairs are not independent: resampling pairs would understate the uncertainty. Here the
*identities* are resampled (the "subsets bootstrap" of biometric evaluation):

- :func:`identity_bootstrap`: how often each of K identities is drawn in each of B resamples of K
  draws with replacement (``counts[b, i] = c_i``);
- :func:`pair_weights`: the weight of every pair in every resample: a genuine pair of identity i
  weighs ``c_i`` (each copy brings its own genuine pairs), an impostor pair (i, j) weighs
  ``c_i * c_j`` (every copy of i against every copy of j; copies of one identity are never
  compared with each other);
- :func:`weighted_eer`, :func:`weighted_tar_at_far`: EER and TAR@FAR of weighted pairs, for many
  weight vectors at once (weights ``[B, P]`` -> ``[B]``); with unit weights they equal
  :func:`facepruning.verification.eer` / :func:`~facepruning.verification.tar_at_far` exactly;
- :func:`bootstrap_metric`, :func:`percentile_interval`, :func:`paired_difference`: replicates,
  95% percentile intervals and paired differences (two runs measured on the same resamples);
- :func:`spearman`, :func:`permutation_pvalue` (scipy.stats): a rank correlation and its
  permutation p-value; :func:`width_rank_correlation`: Spearman's rho of layer width and share of
  channels removed (the prune stage's summary, the analysis' claim C7);
- :func:`width_null`, :func:`null_position`: the distribution of the Spearman correlation between
  layer width and share of channels removed when the same number of channels is removed
  uniformly at random (the null of "the widest layers lose filters first").

Pure numpy/scipy; scores are similarities (higher = same person), accepted when ``>= threshold``,
as in :mod:`facepruning.verification`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from . import channels
from .errors import DataError, ParameterError

__all__ = [
    "Interval",
    "identity_bootstrap",
    "pair_weights",
    "pair_group_weights",
    "metric_function",
    "weighted_eer",
    "weighted_tar_at_far",
    "bootstrap_metric",
    "percentile_interval",
    "paired_difference",
    "spearman",
    "permutation_pvalue",
    "width_rank_correlation",
    "width_null",
    "null_position",
]

#: A metric of weighted pairs: ``(scores [P], genuine [P], weights [B, P|C], *, groups)`` ->
#: ``[B]`` (see :func:`weighted_eer`).
Metric = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval ``[low, high]``."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def identity_bootstrap(n_identities: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Counts ``[n_resamples, n_identities]`` (int64) of each identity in each resample of
    ``n_identities`` draws with replacement; every row sums to ``n_identities``. Deterministic
    in ``seed``."""
    if n_identities < 1 or n_resamples < 1:
        raise ParameterError(
            f"need at least one identity and one resample, got {n_identities}, {n_resamples}"
        )
    rng = np.random.default_rng(seed)
    p = np.full(n_identities, 1.0 / n_identities)
    return rng.multinomial(n_identities, p, size=n_resamples).astype(np.int64)


def _check_pairs(counts: Any, a: Any, b: Any, genuine: Any) -> tuple[np.ndarray, ...]:
    counts = np.atleast_2d(np.asarray(counts))
    a, b = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
    g = np.asarray(genuine, dtype=bool).ravel()
    if not a.shape == b.shape == g.shape:
        raise ParameterError(f"a, b, genuine must have one length: {a.shape, b.shape, g.shape}")
    k = counts.shape[1]
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= k):
        raise ParameterError(f"pair identity codes must lie in [0, {k})")
    if np.any((a == b) != g):
        raise ParameterError("a pair is genuine exactly when both sides have the same identity")
    return counts.astype(np.float64), a, b, g


def pair_weights(counts: Any, a: Any, b: Any, genuine: Any) -> np.ndarray:
    """Weights ``[B, P]`` of pairs ``(a, b)`` (identity codes) in each resample of ``counts``
    ``[B, K]``: ``c_a`` for a genuine pair (``a == b``), ``c_a * c_b`` for an impostor pair."""
    c, a, b, g = _check_pairs(counts, a, b, genuine)
    return c[:, a] * np.where(g, 1.0, c[:, b])


def pair_group_weights(counts: Any, a: Any, b: Any, genuine: Any) -> tuple[np.ndarray, ...]:
    """The weights of :func:`pair_weights` in compact form: ``(weights [B, C], groups [P])``,
    one column per distinct identity pair (unordered), ``groups`` naming each pair's column."""
    c, a, b, g = _check_pairs(counts, a, b, genuine)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keys, groups = np.unique(lo * c.shape[1] + hi, return_inverse=True)
    ka, kb = keys // c.shape[1], keys % c.shape[1]
    return c[:, ka] * np.where(ka == kb, 1.0, c[:, kb]), groups.ravel()


_GROUPED_LIMIT = 50_000_000  # entries of the [groups, P] count table before expanding weights


def _rates(scores: Any, genuine: Any, weights: Any, groups: Any) -> tuple[np.ndarray, ...]:
    """Weighted false and true accept totals at every operating point, strictest first (the
    first point accepts nothing, then one per distinct score, ties accepted together), and the
    weighted impostor and genuine totals: ``(fp [B, M+1], tp [B, M+1], n_imp [B], n_gen [B])``.

    ``weights`` is ``[B, P]`` (one weight per pair), or ``[B, C]`` with ``groups`` ``[P]``
    giving each pair's column (pairs of one group share a weight: far fewer columns to sum).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(genuine, dtype=bool).ravel()
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if groups is not None and w.shape[1] * s.size > _GROUPED_LIMIT:
        w, groups = w[:, np.asarray(groups).ravel()], None
    cols = s.size if groups is None else int(np.asarray(groups).max(initial=-1)) + 1
    if s.shape != g.shape or w.shape[1] < cols or (groups is None and w.shape[1] != s.size):
        raise ParameterError(f"scores {s.shape}, genuine {g.shape}, weights {w.shape} disagree")
    if not np.all(np.isfinite(s)):
        raise ParameterError("scores hold NaN or inf values")
    order = np.argsort(-s, kind="stable")
    s_sorted, g_sorted = s[order], g[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    zero = np.zeros((w.shape[0], 1))
    if groups is None:
        w = w[:, order]
        tp = np.cumsum(w * g_sorted, axis=1)
        total = np.cumsum(w, axis=1)
        tp, fp = tp[:, last], total[:, last] - tp[:, last]
    else:
        table = np.zeros((2, w.shape[1], s.size))  # [impostor/genuine, group, sorted pair]
        table[g_sorted.astype(np.int64), np.asarray(groups).ravel()[order], np.arange(s.size)] = 1
        table = np.cumsum(table, axis=2)[:, :, last]
        fp, tp = w @ table[0], w @ table[1]
    fp, tp = np.concatenate([zero, fp], axis=1), np.concatenate([zero, tp], axis=1)
    return fp, tp, fp[:, -1], tp[:, -1]


def _eer_rows(fp, tp, n_imp, n_gen) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        far, tar = fp / n_imp[:, None], tp / n_gen[:, None]
        d = far + tar - 1.0  # FAR - FRR, non-decreasing from -1 to +1
        rows = np.arange(d.shape[0])
        k = np.argmax(d >= 0.0, axis=1)
        km = np.maximum(k - 1, 0)
        t = -d[rows, km] / (d[rows, k] - d[rows, km])
        out = far[rows, km] + t * (far[rows, k] - far[rows, km])
    out = np.where(d[rows, k] == 0.0, far[rows, k], out)
    return np.where((n_imp > 0) & (n_gen > 0), out, np.nan)


def _grouped_tables(scores: Any, genuine: Any, groups: Any, cols: int) -> np.ndarray:
    """Cumulative impostor and genuine pair counts per group at every operating point,
    strictest first (as :func:`_rates`): ``[2, cols, M+1]``."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(genuine, dtype=bool).ravel()
    if not np.all(np.isfinite(s)):
        raise ParameterError("scores hold NaN or inf values")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    table = np.zeros((2, cols, s.size))
    table[g[order].astype(np.int64), np.asarray(groups).ravel()[order], np.arange(s.size)] = 1
    table = np.cumsum(table, axis=2)[:, :, last]
    return np.concatenate([np.zeros((2, cols, 1)), table], axis=2)


def _eer_bisected(scores: Any, genuine: Any, w: np.ndarray, groups: Any) -> np.ndarray:
    """:func:`_eer_rows` of grouped weights without the full ``[B, M]`` rate tables: FAR - FRR
    never decreases along the operating points, so each row's crossing is found by bisection,
    evaluating the rates at about log2(M) points (the same formula at the same two points)."""
    table = _grouped_tables(scores, genuine, groups, w.shape[1])
    n_imp, n_gen = w @ table[0, :, -1], w @ table[1, :, -1]

    def rates(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            fp = np.einsum("bc,cb->b", w, table[0][:, k])
            tp = np.einsum("bc,cb->b", w, table[1][:, k])
            return fp / n_imp, tp / n_gen

    lo, hi = np.zeros(w.shape[0], dtype=np.int64), np.full(w.shape[0], table.shape[2] - 1)
    while np.any(active := lo < hi):  # the first point with FAR + TAR - 1 >= 0
        mid = (lo + hi) // 2
        far, tar = rates(mid)
        ok = far + tar - 1.0 >= 0.0  # False for NaN rates: such rows stop at the last point
        hi, lo = np.where(active & ok, mid, hi), np.where(active & ~ok, mid + 1, lo)
    k, km = lo, np.maximum(lo - 1, 0)
    (far_k, tar_k), (far_m, tar_m) = rates(k), rates(km)
    with np.errstate(divide="ignore", invalid="ignore"):
        dk, dm = far_k + tar_k - 1.0, far_m + tar_m - 1.0
        t = -dm / (dk - dm)
        out = far_m + t * (far_k - far_m)
    out = np.where(dk == 0.0, far_k, out)
    return np.where((n_imp > 0) & (n_gen > 0), out, np.nan)


def weighted_eer(scores: Any, genuine: Any, weights: Any, *, groups: Any = None) -> np.ndarray:
    """EER of the weighted pairs for each weight vector (``weights`` ``[B, P]`` or ``[P]`` ->
    ``[B]``; or ``[B, C]`` with ``groups``, see :func:`pair_group_weights`): where FAR = FRR on
    the piecewise-linear ROC of weighted rates, as :func:`facepruning.verification.eer` (equal to
    it with unit weights). NaN for a weight vector without genuine or without impostor weight."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    s = np.asarray(scores).ravel()
    if groups is not None and s.shape == np.asarray(genuine).ravel().shape:
        cols = int(np.asarray(groups).max(initial=-1)) + 1
        if w.shape[1] >= cols and w.shape[1] * s.size <= _GROUPED_LIMIT:
            return _eer_bisected(s, genuine, w, groups)
    return _eer_rows(*_rates(scores, genuine, weights, groups))


def _tar_rows(fp, tp, n_imp, n_gen, far: float) -> np.ndarray:
    # The most accepting threshold with FAR <= far: fp is non-decreasing along each row.
    # fp <= far * n_imp equals verification's fp <= floor(far * n_imp) for whole-number weights.
    limit = far * n_imp * (1.0 + 1e-12)
    k = (fp <= limit[:, None]).sum(axis=1) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        out = tp[np.arange(tp.shape[0]), k] / n_gen
    measurable = n_imp >= math.ceil(1.0 / far * (1.0 - 1e-12))
    return np.where(measurable & (n_gen > 0), out, np.nan)


def weighted_tar_at_far(
    scores: Any, genuine: Any, weights: Any, far: float, *, groups: Any = None
) -> np.ndarray:
    """TAR at the most accepting threshold whose weighted FAR is at most ``far`` (no
    interpolation), for each weight vector (``[B, P]`` -> ``[B]``; ``groups`` as in
    :func:`weighted_eer`), as :func:`facepruning.verification.tar_at_far` (equal to it with unit
    weights). NaN where the total impostor weight is below ``ceil(1 / far)`` (verification
    returns None there)."""
    if not 0.0 < far <= 1.0:
        raise ParameterError(f"far must lie in (0, 1], got {far}")
    return _tar_rows(*_rates(scores, genuine, weights, groups), far)


def metric_function(name: str) -> Metric:
    """The weighted metric called ``name``: ``"eer"`` or ``"tar@far=<far>"`` (the keys of
    :func:`facepruning.verification.verification_report`)."""
    if name == "eer":
        return weighted_eer
    if name.startswith("tar@far="):
        far = float(name[len("tar@far=") :])
        return lambda s, g, w, *, groups=None: weighted_tar_at_far(s, g, w, far, groups=groups)
    raise ParameterError(f"unknown metric {name!r}: use 'eer' or 'tar@far=<far>'")


def bootstrap_metric(
    scores: Any, pairs: Mapping[str, Any], counts: np.ndarray, metric: str | Metric
) -> np.ndarray:
    """Replicates ``[B]`` of ``metric`` over the identity resamples ``counts`` ``[B, K]``.

    ``pairs`` maps ``a``, ``b`` (identity codes) and ``genuine`` to arrays of one entry per
    score; ``metric`` is a name for :func:`metric_function` or a function like
    :func:`weighted_eer` (``(scores, genuine, weights, *, groups)`` -> ``[B]``).
    """
    fn = metric_function(metric) if isinstance(metric, str) else metric
    weights, groups = pair_group_weights(counts, pairs["a"], pairs["b"], pairs["genuine"])
    return np.asarray(fn(np.asarray(scores), np.asarray(pairs["genuine"]), weights, groups=groups))


def percentile_interval(replicates: Any, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of the replicates (NaN replicates left out;
    ``(nan, nan)`` when none is finite)."""
    if not 0.0 < level < 1.0:
        raise ParameterError(f"level must lie in (0, 1), got {level}")
    r = np.asarray(replicates, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(r, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_difference(
    rep_a: Any,
    rep_b: Any,
    *,
    estimate: float | None = None,
    level: float = 0.95,
) -> Interval:
    """``a - b`` measured on the same resamples: the percentile interval of the per-resample
    differences, around ``estimate`` (the difference on the full data; the median difference
    when not given)."""
    a, b = np.asarray(rep_a, dtype=np.float64), np.asarray(rep_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ParameterError(f"paired replicates must have one shape, got {a.shape}, {b.shape}")
    diff = a - b
    low, high = percentile_interval(diff, level)
    if estimate is None:
        finite = diff[np.isfinite(diff)]
        estimate = float(np.median(finite)) if finite.size else float("nan")
    return Interval(float(estimate), low, high)


def _check_pair(x: Any, y: Any, name: str = "spearman") -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise DataError(f"{name} needs two 1-d sequences of one length, got {x.shape}, {y.shape}")
    return x, y


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``; ties: average ranks); NaN when
    either side is constant or has fewer than two values."""
    x, y = _check_pair(x, y)
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)


def permutation_pvalue(x: Any, y: Any, *, n_permutations: int = 5000, seed: int = 0) -> float:
    """Two-sided permutation p-value of :func:`spearman`: the share of orders of ``y`` whose
    ``|rho|`` is at least the observed one (``scipy.stats.permutation_test``, pairings).

    With more permutations than orders of ``y`` every order is tried (exact); otherwise
    ``n_permutations`` random ones, counting the observed order as one of them, so the value is
    never 0. NaN where :func:`spearman` is.
    """
    x, y = _check_pair(x, y)
    if math.isnan(spearman(x, y)):
        return float("nan")
    rx = stats.rankdata(x)
    rx = rx - rx.mean()

    def abs_rho(ry: np.ndarray, axis: int = -1) -> np.ndarray:
        # Spearman's rho of x with each permuted order of y: Pearson's r of the ranks (the ranks
        # of a permuted y are the permuted ranks of y, ties keeping their average rank).
        ry = ry - ry.mean(axis=axis, keepdims=True)
        r = (rx * ry).sum(axis=axis) / np.sqrt((rx**2).sum() * (ry**2).sum(axis=axis))
        return np.abs(r)

    result = stats.permutation_test(
        (stats.rankdata(y),),
        abs_rho,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="greater",
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def width_rank_correlation(widths: Any, remaining: Any) -> float:
    """Spearman's rho of every layer group's starting width and the share of it removed,
    ``1 - remaining / widths`` (:func:`spearman`: NaN when every group lost the same share or all
    are equally wide): > 0 when the wider groups lose larger shares, the observed value that
    :func:`width_null` draws under random removal."""
    widths, remaining = _check_pair(widths, remaining, "width_rank_correlation")
    return spearman(widths, 1 - remaining / widths)


def _rank_rows(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, centred, as scipy.stats.rankdata does per row."""
    r = stats.rankdata(x, axis=-1)
    return r - r.mean(axis=-1, keepdims=True)


def width_null(
    widths: Any,
    removed_total: int,
    *,
    min_channels: int = 1,
    channel_multiple: int = 1,
    steps: Sequence[int] | None = None,
    n: int = 10000,
    seed: int = 0,
    normalised: bool = False,
) -> np.ndarray:
    """``n`` draws of Spearman's rho (width vs share removed) under random removal.

    ``removed_total`` channels are drawn uniformly without replacement from all prunable channels,
    each group of width ``w`` offering all but the ``min_channels`` it must keep (multivariate
    hypergeometric). With ``channel_multiple`` m > 1 the draw follows the pruning loop
    (:func:`facepruning.pruning.loop.select_channels`) step by step, ``steps`` giving the
    channels removed at each step (default: one step of ``removed_total``): a uniform draw, then
    each group's share rounded down to keep a multiple of m and the groups with the largest
    left-over shares rounded up until the step's count is reached. That rounding favours wide
    groups by itself, so a null that ignored it would make random removal look width-ordered.
    ``normalised``: the scores are uniform draws divided, group by group, by their L2 norm, as the
    loop's layer-wise normalisation divides a criterion's scores, and each step takes the
    globally lowest (a group of width w has scores of about ``1 / sqrt(w / 3)``, so the wide
    groups lose more by the normalisation alone): the null of a normalised criterion that knows
    nothing of the channels. Ranks as :func:`scipy.stats.spearmanr` (average ranks for ties); NaN
    for a draw whose shares are constant (or for constant widths)."""
    w = np.asarray(widths, dtype=np.int64).ravel()
    if w.size < 2 or np.any(w <= 0) or channel_multiple < 1:
        raise ParameterError("width_null needs two groups of positive width and a multiple >= 1")
    keep = max(min_channels, 1)
    if not 0 <= removed_total <= np.maximum(w - keep, 0).sum():
        raise ParameterError(f"cannot remove {removed_total} of {(w - keep).sum()} channels")
    rng = np.random.default_rng(seed)
    counts = list(steps) if steps is not None else [removed_total]
    if normalised:
        removed = w - _aligned_removal(w, counts, keep, channel_multiple, n, rng, _normalised_draw)
    elif channel_multiple == 1:
        removed = rng.multivariate_hypergeometric(np.maximum(w - keep, 0), removed_total, size=n)
    else:
        removed = w - _aligned_removal(w, counts, keep, channel_multiple, n, rng, _uniform_draw)
    rx = _rank_rows(w.astype(np.float64))
    ry = _rank_rows(removed / w)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (ry @ rx) / np.sqrt((rx**2).sum() * (ry**2).sum(axis=1))
    return np.where(np.isfinite(rho), rho, np.nan)


def _capped_draw(rng, sizes: np.ndarray, cap: np.ndarray, count: int) -> np.ndarray:
    """``count`` channels drawn uniformly over all channels of the groups (``sizes``), a group
    giving at most ``cap``: what taking the lowest of uniform scores, skipping full groups, does
    (a group's chance follows its width, not its capacity). The excess of a full group is drawn
    again over the room the others have left."""
    k = rng.multivariate_hypergeometric(sizes, count)
    excess = int(np.maximum(k - cap, 0).sum())
    if excess:
        k = np.minimum(k, cap)
        k = k + rng.multivariate_hypergeometric(cap - k, excess)
    return k


def _uniform_draw(rng, left: np.ndarray, cap: np.ndarray, count: int) -> np.ndarray:
    """Channels each group gives ``[n, groups]`` when ``count`` go uniformly, capped."""
    return np.stack([_capped_draw(rng, size, c, count) for size, c in zip(left, cap, strict=True)])


def _normalised_draw(rng, left: np.ndarray, cap: np.ndarray, count: int) -> np.ndarray:
    """Channels each group gives ``[n, groups]`` when the ``count`` lowest of uniform scores,
    each group's divided by its L2 norm, go, no group giving more than its ``cap`` (taking the
    global lowest while skipping full groups = the lowest among each group's ``cap`` lowest)."""
    n, groups = left.shape
    k = np.zeros_like(left)
    if count == 0:
        return k
    for rows in np.array_split(np.arange(n), max(1, n * int(left.sum(axis=1).max()) // 4_000_000)):
        blocks = []
        for g in range(groups):
            size = left[rows, g]
            width = int(size.max())
            present = np.arange(width) < size[:, None]
            u = np.where(present, rng.random((len(rows), width)), 0.0)
            norm = np.sqrt((u**2).sum(axis=1, keepdims=True))
            z = np.sort(np.where(present, u / np.where(norm > 0, norm, 1.0), np.inf), axis=1)
            blocks.append(np.where(np.arange(width) < cap[rows, g][:, None], z, np.inf))
        flat = np.concatenate(blocks, axis=1)
        threshold = np.partition(flat, count - 1, axis=1)[:, count - 1 : count]
        k[rows] = np.stack([(b <= threshold).sum(axis=1) for b in blocks], axis=1)
    return k


def _aligned_removal(w, counts, keep: int, m: int, n: int, rng, draw) -> np.ndarray:
    """Widths left ``[n, groups]`` after ``counts`` steps of removal by ``draw`` (uniform or
    normalised), rounded to multiples of ``m`` exactly as ``select_channels`` rounds
    (vectorised over the ``n`` draws)."""
    left = np.tile(w, (n, 1))
    for count in counts:
        cap = left - channels.floor(left, keep, m)
        count = int(min(count, cap.sum(axis=1).min()))
        k = draw(rng, left, cap, count)
        down, up = channels.rounded_share(left, k, m, cap)
        order = np.argsort(down - k, axis=1, kind="stable")  # largest left-over share first
        eligible = np.take_along_axis(k > down, order, axis=1)
        inc = np.where(eligible, np.take_along_axis(up - down, order, axis=1), 0)
        before = down.sum(axis=1, keepdims=True) + np.cumsum(inc, axis=1) - inc
        take = np.zeros_like(eligible)
        np.put_along_axis(take, order, eligible & (before < count), axis=1)
        left = left - np.where(take, up, down)
    return left


def null_position(observed: float, null: Any, level: float = 0.95) -> dict[str, float]:
    """Where ``observed`` sits in a simulated ``null``: ``p`` (two-sided: twice the smaller tail,
    each tail counting the observed value as one draw, at most 1), ``low`` / ``high`` (the
    null's central ``level`` quantiles, 2.5% and 97.5% by default) and ``median``. NaN draws
    are left out; everything is NaN for a NaN ``observed``."""
    z = np.asarray(null, dtype=np.float64).ravel()
    z = z[np.isfinite(z)]
    low, high = percentile_interval(z, level)
    if not math.isfinite(observed) or z.size == 0:
        return {
            "rho": float(observed),
            "p": float("nan"),
            "low": low,
            "high": high,
            "median": float(np.median(z)) if z.size else float("nan"),
        }
    upper = (1 + np.sum(z >= observed)) / (1 + z.size)
    lower = (1 + np.sum(z <= observed)) / (1 + z.size)
    return {
        "rho": float(observed),
        "p": float(min(1.0, 2 * min(upper, lower))),
        "low": low,
        "high": high,
        "median": float(np.median(z)),
    }
