"""Face-verification metrics: from descriptors and identities to EER, TAR@FAR and accuracy.

This module measures a face-recognition network without knowing anything about it: it takes
descriptors (one row per image, as ``numpy`` arrays or ``torch`` tensors) and identity labels,
builds the comparisons of a protocol, and summarises the similarity scores. All metric arithmetic
is done in float64 numpy.

Conventions used throughout
---------------------------
- A *score* is a similarity (cosine of L2-normalised descriptors): higher means "same person".
- A comparison is *accepted* at threshold ``t`` when ``score >= t``. FAR (false accept rate) is
  the share of impostor scores accepted, TAR (true accept rate) the share of genuine scores
  accepted, FRR = 1 - TAR.
- ``roc`` lists one operating point per distinct score (plus the reject-everything point at
  threshold ``+inf``), exactly as ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``;
  tied scores move FAR and TAR together, in one step.
- ``eer`` is read on the piecewise-linear ROC (straight segments between consecutive operating
  points, the curve whose area is ``roc_auc``): the point of that curve where FAR = FRR. When an
  operating point has FAR = FRR exactly, that is the EER; otherwise it lies on the segment that
  crosses the line FAR = 1 - TAR (a segment is what a random choice between its two thresholds
  achieves, so the EER is always attainable).
- ``tar_at_far`` never interpolates: it is the TAR of the most accepting threshold whose measured
  FAR does not exceed the target, and ``None`` when fewer than ``ceil(1 / far)`` impostor scores
  exist (such a FAR cannot be measured).

Protocols
---------
The comparisons come from :mod:`facepruning.comparisons` (re-exported here).

- ``all_pairs``: every genuine and impostor pair of images over a test set. All pairs of n images
  are n(n-1)/2: fine for small test sets (ORL, a few thousand images); for ~10k images use
  ``max_impostors`` (all genuine pairs are kept, impostors are a seeded uniform subsample).
- ``template_splits``: k-image templates (SqueezerFaceNet uses 5), many disjoint pairs of them per
  identity, the same number for every identity (one pair per identity would give 10 genuine
  comparisons on ORL's test set, an EER that moves in steps of 0.1).
- LFW pairs (``kfold_accuracy``): threshold chosen on nine folds, accuracy on the tenth.
- VGGFace2-Pose: 5-image templates of one pose (F frontal, Q three-quarter, P profile), compared
  within and across poses.

``verification_report`` runs all of them and returns a nested dict; ``flatten_report`` turns it
into ``{"t1/eer": ..., "t5/tar@far=0.01": ...}`` for CSV histories.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from facepruning.comparisons import (
    MAX_IMPOSTORS,
    TEMPLATE_SPLITS,
    _as_labels,
    _as_matrix,
    _identity_codes,
    _to_numpy,
    all_pairs,
    cosine_similarity_matrix,
    l2_normalize,
    pair_scores,
    template_splits,
    templates,
)
from facepruning.errors import DataError, ParameterError

__all__ = [
    "l2_normalize",
    "cosine_similarity_matrix",
    "pair_scores",
    "eer_threshold",
    "all_pairs",
    "templates",
    "template_splits",
    "TEMPLATE_SPLITS",
    "MAX_IMPOSTORS",
    "roc",
    "eer",
    "tar_at_far",
    "roc_auc",
    "best_threshold_accuracy",
    "kfold_accuracy",
    "identification_accuracy",
    "far_key",
    "verification_report",
    "flatten_report",
    "POSE_BLOCKS",
]

#: The pose comparisons of VGGFace2-Pose, in the order the papers list them.
POSE_BLOCKS: tuple[tuple[str, str], ...] = (
    ("F", "F"),
    ("F", "Q"),
    ("F", "P"),
    ("Q", "Q"),
    ("Q", "P"),
    ("P", "P"),
)


# --------------------------------------------------------------------------------------------
# conversion helpers
# --------------------------------------------------------------------------------------------
def _scores_labels(scores: Any, genuine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores and boolean genuine labels of the same length."""
    s = _to_numpy(scores).astype(np.float64, copy=False).ravel()
    g_raw = _to_numpy(genuine).ravel()
    if s.shape != g_raw.shape:
        raise ParameterError(
            f"scores and genuine must have the same length, got {s.size} and {g_raw.size}"
        )
    if not np.all(np.isfinite(s)):
        raise ParameterError("scores hold NaN or inf values; check the descriptors")
    return s, _as_bool(g_raw)


def _as_bool(genuine: np.ndarray) -> np.ndarray:
    if genuine.dtype == bool:
        return genuine
    if not np.all((genuine == 0) | (genuine == 1)):
        raise ParameterError("genuine must be boolean or 0/1 (1 = same identity)")
    return genuine.astype(bool)


_Points = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]


def _operating_points(scores: Any, genuine: Any) -> _Points:
    """False and true accept counts at every distinct threshold, most strict first.

    Returns ``(fp, tp, thresholds, n_impostor, n_genuine)``; the first point is threshold +inf
    (nothing accepted), then one point per distinct score in decreasing order.
    """
    s, g = _scores_labels(scores, genuine)
    n_gen = int(g.sum())
    n_imp = int(g.size - n_gen)
    if n_gen == 0 or n_imp == 0:
        raise ParameterError(
            f"need both genuine and impostor scores, got {n_gen} genuine and {n_imp} impostor"
        )
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    g_sorted = g[order]
    tp = np.cumsum(g_sorted, dtype=np.int64)
    fp = np.cumsum(~g_sorted, dtype=np.int64)
    # last position of each run of equal scores: ties are accepted together
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), s_sorted.size - 1]
    zero = np.zeros(1, dtype=np.int64)
    return (
        np.concatenate([zero, fp[last]]),
        np.concatenate([zero, tp[last]]),
        np.concatenate([[np.inf], s_sorted[last]]),
        n_imp,
        n_gen,
    )


# --------------------------------------------------------------------------------------------
# metrics on (scores, genuine)
# --------------------------------------------------------------------------------------------
def roc(scores: Any, genuine: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC: ``(far, tar, thresholds)`` at every distinct threshold, strictest first.

    ``thresholds[0]`` is ``+inf`` (nothing accepted, FAR = TAR = 0); then each distinct score in
    decreasing order, accepting ``score >= threshold``; the last point accepts everything
    (FAR = TAR = 1). Equal to ``sklearn.metrics.roc_curve(genuine, scores,
    drop_intermediate=False)``.
    """
    fp, tp, thr, n_imp, n_gen = _operating_points(scores, genuine)
    return fp / n_imp, tp / n_gen, thr


def eer(scores: Any, genuine: Any) -> float:
    """Equal error rate: where FAR = FRR on the piecewise-linear ROC (see the module docstring).

    0 for perfectly separated scores, 0.5 when all scores are equal.
    """
    return _eer(_operating_points(scores, genuine))


def _eer(points: _Points) -> float:
    fp, tp, _, n_imp, n_gen = points
    far, tar = fp / n_imp, tp / n_gen
    d = far + tar - 1.0  # = FAR - FRR, non-decreasing, from -1 to +1
    k = int(np.argmax(d >= 0.0))
    if d[k] == 0.0:
        return float(far[k])
    # segment (k-1, k) crosses FAR = FRR; both rates are linear along it
    t = -d[k - 1] / (d[k] - d[k - 1])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))


def eer_threshold(scores: Any, genuine: Any) -> float:
    """The decision threshold at the equal error rate: accept a pair when its score is at least
    this. It is the score of the first operating point (strictest first) where FAR >= FRR, the
    point the stored models of :mod:`facepruning.pruning` use to decide ``verify``."""
    fp, tp, thresholds, n_imp, n_gen = _operating_points(scores, genuine)
    k = int(np.argmax(fp / n_imp + tp / n_gen - 1.0 >= 0.0))
    return float(thresholds[k])


def _min_impostors(far: float) -> int:
    return math.ceil(1.0 / far * (1.0 - 1e-12))


def tar_at_far(scores: Any, genuine: Any, far: float) -> float | None:
    """TAR at the most accepting threshold whose FAR is at most ``far`` (no interpolation).

    Returns None when there are fewer than ``ceil(1 / far)`` impostor scores: a FAR that small
    cannot be measured on them, and a number would be a fiction.
    """
    return _tar_at_far(_operating_points(scores, genuine), far)


def _tar_at_far(points: _Points, far: float) -> float | None:
    if not 0.0 < far <= 1.0:
        raise ParameterError(f"far must lie in (0, 1], got {far}")
    fp, tp, _, n_imp, n_gen = points
    if n_imp < _min_impostors(far):
        return None
    max_fp = math.floor(far * n_imp * (1.0 + 1e-12))
    k = int(np.searchsorted(fp, max_fp, side="right")) - 1  # fp is non-decreasing, fp[0] = 0
    return float(tp[k] / n_gen)


def roc_auc(scores: Any, genuine: Any) -> float:
    """Area under the ROC (trapezoids; a tie between a genuine and an impostor counts 1/2)."""
    return _roc_auc(_operating_points(scores, genuine))


def _roc_auc(points: _Points) -> float:
    fp, tp, _, n_imp, n_gen = points
    far, tar = fp / n_imp, tp / n_gen
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def best_threshold_accuracy(scores: Any, genuine: Any) -> tuple[float, float]:
    """``(accuracy, threshold)`` of the threshold that classifies the most pairs correctly.

    The decisions tried are those of the ROC thresholds (reject all, then accept every score down
    to each distinct score); among equally accurate ones the strictest wins. The threshold returned
    (accept ``score >= threshold``) is the midpoint between the lowest accepted and the highest
    rejected score, so that it gives the same decisions on these scores and sits in the middle of
    the gap for unseen ones (``kfold_accuracy``); it is ``+inf`` when rejecting everything wins and
    the lowest score when accepting everything wins.
    """
    return _best_threshold_accuracy(_operating_points(scores, genuine))


def _best_threshold_accuracy(points: _Points) -> tuple[float, float]:
    fp, tp, thr, n_imp, n_gen = points
    correct = tp + (n_imp - fp)
    k = int(np.argmax(correct))
    threshold = thr[k]
    if 0 < k < thr.size - 1:
        mid = 0.5 * (thr[k] + thr[k + 1])
        if mid > thr[k + 1]:  # adjacent floats: keep the accepted score itself
            threshold = mid
    return float(correct[k] / (n_imp + n_gen)), float(threshold)


def kfold_accuracy(scores: Any, genuine: Any, folds: int | Any = 10) -> tuple[float, float]:
    """LFW-style accuracy: ``(mean, std)`` over folds of the held-out accuracy.

    For each fold, the threshold is ``best_threshold_accuracy`` on the other folds and the
    accuracy is measured on the fold itself. ``folds`` is either the number of folds (contiguous
    equal blocks in the given order, as LFW's pairs.txt lists them) or one fold id per score. The
    std is the population std (ddof=0), as the usual LFW scripts report it.
    """
    s, g = _scores_labels(scores, genuine)
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        if not 2 <= folds <= s.size:
            raise ParameterError(f"need 2 <= folds <= number of scores, got folds={folds}")
        fold_ids = np.arange(s.size) * int(folds) // s.size
    else:
        fold_ids = _as_labels(folds, "folds")
        if fold_ids.size != s.size:
            raise ParameterError(f"folds has {fold_ids.size} entries for {s.size} scores")
    unique = np.unique(fold_ids)
    if unique.size < 2:
        raise ParameterError("kfold_accuracy needs at least 2 distinct folds")
    accs = []
    for f in unique:
        test = fold_ids == f
        _, thr = best_threshold_accuracy(s[~test], g[~test])
        accs.append(np.mean((s[test] >= thr) == g[test]))
    return float(np.mean(accs)), float(np.std(accs))


def identification_accuracy(logits: Any, labels: Any) -> float:
    """Closed-set top-1 accuracy: share of rows whose largest logit is at the true label."""
    z = _to_numpy(logits)
    y = _as_labels(labels, "labels")
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ParameterError(
            f"logits must be [n, classes] with n = len(labels), got {z.shape} and {y.size} labels"
        )
    if y.size == 0:
        raise ParameterError("identification_accuracy needs at least one sample")
    return float(np.mean(np.argmax(z, axis=1) == y))


# --------------------------------------------------------------------------------------------
# protocol runners
# --------------------------------------------------------------------------------------------
def far_key(far: float) -> str:
    """Report key of a TAR@FAR entry: ``far_key(0.001) == "tar@far=0.001"``."""
    return f"tar@far={far:g}"


def _block(
    scores: np.ndarray, genuine: np.ndarray, fars: Sequence[float], *, full: bool
) -> dict[str, Any]:
    n_gen = int(genuine.sum())
    n_imp = int(genuine.size - n_gen)
    pts = _operating_points(scores, genuine) if n_gen > 0 and n_imp > 0 else None
    out: dict[str, Any] = {"eer": _eer(pts) if pts else None}
    if full:
        out["auc"] = _roc_auc(pts) if pts else None
        out["acc"] = _best_threshold_accuracy(pts)[0] if pts else None
    for far in fars:
        out[far_key(far)] = _tar_at_far(pts, far) if pts else None
    out["n_genuine"] = n_gen
    out["n_impostor"] = n_imp
    return out


def _lfw_block(descriptors: np.ndarray, identities: np.ndarray, pairs: Any) -> dict[str, Any]:
    try:
        fold, a, b, gen = (_as_labels(pairs[c], c) for c in ("fold", "a", "b", "genuine"))
    except (KeyError, IndexError, TypeError) as exc:
        raise DataError(
            "pairs must have columns fold, a, b, genuine (pairs.csv written by notebook 01)"
        ) from exc
    a = a.astype(np.int64)
    b = b.astype(np.int64)
    g = _as_bool(gen)
    n = descriptors.shape[0]
    if a.size and (min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= n):
        raise DataError(f"pairs a/b must be positions into the {n} descriptors")
    same = identities[a] == identities[b]
    if np.any(same != g):
        bad = int(np.flatnonzero(same != g)[0])
        raise DataError(
            f"pair {bad} (a={a[bad]}, b={b[bad]}) is labelled genuine={bool(g[bad])} but the "
            "identities say otherwise; pairs a/b must be positions into the descriptors"
        )
    scores = pair_scores(descriptors, a, b)
    mean, std = kfold_accuracy(scores, g, fold)
    pts = _operating_points(scores, g)
    return {"accuracy_mean": mean, "accuracy_std": std, "eer": _eer(pts), "auc": _roc_auc(pts)}


def _pose_blocks(
    descriptors: np.ndarray,
    identities: np.ndarray,
    poses: Any,
    template_ids: Any,
    fars: Sequence[float],
) -> dict[str, dict[str, Any]]:
    pose = _as_labels(poses, "poses").astype(str)
    tid = _as_labels(template_ids, "template_ids")
    n = descriptors.shape[0]
    if pose.size != n or tid.size != n:
        raise DataError(f"poses and template_ids need one entry per descriptor ({n})")
    unknown = sorted(set(np.unique(pose)) - {"F", "Q", "P"})
    if unknown:
        raise DataError(f"poses must be F, Q or P, found {unknown}")
    codes = _identity_codes(tid)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    t_desc, t_id, t_pose = [], [], []
    for members in np.split(order, bounds):
        if np.unique(pose[members]).size != 1 or np.unique(identities[members]).size != 1:
            raise DataError(
                f"template {tid[members[0]]!r} mixes poses or identities; each template must "
                "hold images of one identity in one pose"
            )
        t_desc.append(descriptors[members].mean(axis=0))
        t_id.append(members[0])
        t_pose.append(pose[members[0]])
    t_x = l2_normalize(np.stack(t_desc))
    t_identity = identities[np.asarray(t_id)]
    t_pose_arr = np.asarray(t_pose)

    blocks: dict[str, dict[str, Any]] = {}
    for p, q in POSE_BLOCKS:
        ip = np.flatnonzero(t_pose_arr == p)
        iq = np.flatnonzero(t_pose_arr == q)
        sim = t_x[ip] @ t_x[iq].T
        same = t_identity[ip][:, None] == t_identity[iq][None, :]
        if p == q:  # unordered pairs of distinct templates
            r, c = np.triu_indices(ip.size, 1)
            scores, gen = sim[r, c], same[r, c]
        else:
            scores, gen = sim.ravel(), same.ravel()
        blocks[f"pose/{p}-{q}"] = _block(scores, gen, fars, full=False)
    return blocks


def verification_report(
    descriptors: Any,
    identities: Any,
    *,
    template_sizes: Sequence[int] = (1, 5),
    fars: Sequence[float] = (1e-3, 1e-2, 1e-1),
    pairs: Any = None,
    poses: Any = None,
    template_ids: Any = None,
    max_impostors: int | None = MAX_IMPOSTORS,
    template_splits_per_identity: int = TEMPLATE_SPLITS,
    seed: int = 0,
    pair_scores_out: dict[str, dict[str, np.ndarray]] | None = None,
) -> dict[str, dict[str, Any]]:
    """All verification results for one set of descriptors, as a nested dict.

    - ``"t{k}"`` for each k in ``template_sizes``: for ``k = 1`` every pair of images
      (``all_pairs`` with ``max_impostors``/``seed``; the default keeps every pair of up to ~1400
      images); for ``k > 1`` disjoint k-image templates, ``template_splits_per_identity`` genuine
      comparisons per identity and as many impostor ones per two identities
      (:func:`template_splits`, at most ``max_impostors`` of them), with keys ``eer``, ``auc``,
      ``acc`` (best-threshold accuracy: the threshold is chosen on the same scores, so it is an
      optimistic upper bound, unlike the LFW k-fold one), ``"tar@far=<far>"`` per far (None when
      unmeasurable), ``n_genuine``, ``n_impostor``.
      Metrics are None when a block has no genuine or no impostor pair.
    - ``"lfw"`` when ``pairs`` (DataFrame or mapping with columns fold, a, b, genuine; a and b are
      positions into ``descriptors``) is given: ``accuracy_mean``, ``accuracy_std`` (k-fold over
      the fold column), ``eer``, ``auc``.
    - ``"pose/F-F"``, ``"pose/F-Q"``, ``"pose/F-P"``, ``"pose/Q-Q"``, ``"pose/Q-P"``,
      ``"pose/P-P"`` when ``poses`` and ``template_ids`` (one per image) are given: templates are
      the mean of each template id's images (L2-normalised), compared between the two poses
      (genuine = same identity, a template never with itself), with ``eer``, ``"tar@far=<far>"``,
      ``n_genuine``, ``n_impostor``.

    With ``pair_scores_out`` (a dict), every ``"t{k}"`` block's pairs are stored there too, for
    resampling by identity: ``{"t1": {"scores", "a", "b", "genuine"}}``, where ``a`` and ``b`` are
    the codes of the two sides' identities (positions in ``np.unique(identities)``).
    """
    x = _as_matrix(descriptors, "descriptors")
    ids = _as_labels(identities, "identities")
    if ids.size != x.shape[0]:
        raise ParameterError(
            f"identities has {ids.size} entries but descriptors has {x.shape[0]} rows"
        )
    for far in fars:
        if not 0.0 < far <= 1.0:
            raise ParameterError(f"fars must lie in (0, 1], got {far}")
    if (poses is None) != (template_ids is None):
        raise ParameterError("poses and template_ids go together: give both or neither")

    report: dict[str, dict[str, Any]] = {}
    for k in template_sizes:
        if k == 1:
            i, j, gen = all_pairs(ids, max_impostors=max_impostors, seed=seed)
            scores, codes = pair_scores(l2_normalize(x), i, j), _identity_codes(ids)
            a, b = codes[i], codes[j]
        else:
            scores, a, b, gen = template_splits(
                x, ids, size=k, splits=template_splits_per_identity, max_impostors=max_impostors,
                seed=seed,
            )  # fmt: skip
        report[f"t{k}"] = _block(scores, gen, fars, full=True)
        if pair_scores_out is not None:
            pair_scores_out[f"t{k}"] = {"scores": scores, "a": a, "b": b, "genuine": gen}
    if pairs is not None:
        report["lfw"] = _lfw_block(x, ids, pairs)
    if poses is not None:
        report.update(_pose_blocks(x, ids, poses, template_ids, fars))
    return report


def flatten_report(report: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"t1": {"eer": 0.1}}`` -> ``{"t1/eer": 0.1}``, in the report's order (for CSV rows)."""
    return {
        f"{block}/{key}": value for block, inner in report.items() for key, value in inner.items()
    }
