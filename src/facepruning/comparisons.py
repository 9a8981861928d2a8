"""Comparisons for face verification: descriptors and identities in, scored pairs out.

- :func:`l2_normalize`, :func:`cosine_similarity_matrix`, :func:`pair_scores`: cosine scores;
- :func:`all_pairs`: every genuine and impostor pair of images (impostors optionally sampled);
- :func:`templates`: k-image templates, consecutive images of one identity averaged;
- :func:`template_splits`: many disjoint pairs of k-image templates per identity, the same number
  for every identity and every two identities whose images allow it (so each counts once in an
  EER).

:mod:`facepruning.verification` builds its protocols from these and re-exports them; it also
holds the metrics computed on the scores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from facepruning.errors import ParameterError

__all__ = [
    "l2_normalize",
    "cosine_similarity_matrix",
    "pair_scores",
    "all_pairs",
    "templates",
    "template_splits",
    "TEMPLATE_SPLITS",
    "MAX_IMPOSTORS",
]

_CHUNK = 1024  # pairs scored per step in pair_scores: small blocks stay in cache (fastest)


# --------------------------------------------------------------------------------------------
# conversion helpers
# --------------------------------------------------------------------------------------------
def _to_numpy(x: Any) -> np.ndarray:
    """A numpy view/copy of an array-like or a torch tensor (on any device)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if x.is_floating_point():  # bfloat16 has no numpy dtype; metrics want float64 anyway
            x = x.double()
        x = x.numpy()
    return np.asarray(x)


def _as_matrix(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x).astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be 2-D [n, dim], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} holds NaN or inf values; check the model's output")
    return arr


def _as_labels(x: Any, name: str) -> np.ndarray:
    arr = _to_numpy(x)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-D (one entry per image), got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------------------------
# descriptors and pairs
# --------------------------------------------------------------------------------------------
def l2_normalize(x: Any, *, eps: float = 1e-12) -> np.ndarray:
    """Rows (last axis) scaled to unit L2 norm, as float64; all-zero rows stay zero."""
    arr = _to_numpy(x).astype(np.float64)
    norm = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norm, eps)


def cosine_similarity_matrix(a: Any, b: Any) -> np.ndarray:
    """``[len(a), len(b)]`` float64 matrix of cosine similarities between the rows of a and b."""
    a2 = _as_matrix(a, "a")
    b2 = _as_matrix(b, "b")
    if a2.shape[1] != b2.shape[1]:
        raise ParameterError(f"a and b differ in dimension: {a2.shape[1]} vs {b2.shape[1]}")
    return l2_normalize(a2) @ l2_normalize(b2).T


def pair_scores(descriptors: Any, a: Any, b: Any) -> np.ndarray:
    """Cosine similarity of rows ``a[k]`` and ``b[k]`` of ``descriptors`` for every k (float64).

    Works in chunks, so millions of pairs need only a few hundred MB of temporary memory.
    """
    x = l2_normalize(_as_matrix(descriptors, "descriptors"))
    ia = _as_labels(a, "a").astype(np.int64)
    ib = _as_labels(b, "b").astype(np.int64)
    if ia.shape != ib.shape:
        raise ParameterError(f"a and b must have the same length, got {ia.size} and {ib.size}")
    n = x.shape[0]
    if ia.size and (min(ia.min(), ib.min()) < 0 or max(ia.max(), ib.max()) >= n):
        raise ParameterError(f"pair positions must lie in [0, {n}) (rows of descriptors)")
    out = np.empty(ia.size, dtype=np.float64)
    for start in range(0, ia.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        out[sl] = np.einsum("ij,ij->i", x[ia[sl]], x[ib[sl]])
    return out


def _identity_codes(identities: Any) -> np.ndarray:
    ids = _as_labels(identities, "identities")
    return np.unique(ids, return_inverse=True)[1].ravel().astype(np.int64)


def _genuine_pairs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    ii, jj = [], []
    for members in np.split(order, bounds):
        m = members.size
        if m < 2:
            continue
        r, c = np.triu_indices(m, 1)
        ii.append(members[r])
        jj.append(members[c])
    if not ii:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    i = np.concatenate(ii)
    j = np.concatenate(jj)
    return np.minimum(i, j), np.maximum(i, j)


def all_pairs(
    identities: Any, *, max_impostors: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every genuine pair and every (or a sample of the) impostor pair over a set of images.

    Returns ``(i, j, genuine)``: int64 positions with ``i < j`` into ``identities`` (and so into
    the descriptors) and a boolean array, True where both images have the same identity; pairs are
    sorted by ``(i, j)``. n images give n(n-1)/2 pairs: this is meant for small test sets. With
    ``max_impostors`` all genuine pairs are kept and at most that many impostor pairs are drawn
    uniformly without replacement (reproducible from ``seed``), without enumerating all pairs.
    """
    codes = _identity_codes(identities)
    n = codes.size
    gi, gj = _genuine_pairs(codes)
    n_imp_total = n * (n - 1) // 2 - gi.size
    if max_impostors is not None and max_impostors < 0:
        raise ParameterError(f"max_impostors must be >= 0 or None, got {max_impostors}")

    if max_impostors is None or max_impostors >= n_imp_total:
        ii, jj = np.triu_indices(n, 1)
        keep = codes[ii] != codes[jj]
        ii, jj = ii[keep].astype(np.int64), jj[keep].astype(np.int64)
    elif 2 * max_impostors > n_imp_total:
        # a large share of all impostors: enumerate and subsample
        rng = np.random.default_rng(seed)
        ii, jj = np.triu_indices(n, 1)
        keep = np.flatnonzero(codes[ii] != codes[jj])
        pick = np.sort(rng.choice(keep, size=max_impostors, replace=False))
        ii, jj = ii[pick].astype(np.int64), jj[pick].astype(np.int64)
    else:
        # rejection sampling of unordered pairs: (i, j) uniform over ordered pairs with i != j
        # is uniform over unordered pairs once sorted
        rng = np.random.default_rng(seed)
        p_imp = n_imp_total / (n * (n - 1) / 2)
        keys = np.zeros(0, dtype=np.int64)
        while keys.size < max_impostors:
            need = max_impostors - keys.size
            draw = int(need / (p_imp * 0.9)) + 1024
            a = rng.integers(0, n, size=draw)
            b = rng.integers(0, n, size=draw)
            ok = (a != b) & (codes[a] != codes[b])
            lo, hi = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
            keys = np.union1d(keys, lo * n + hi)
        if keys.size > max_impostors:
            keys = np.sort(rng.choice(keys, size=max_impostors, replace=False))
        ii, jj = keys // n, keys % n

    i = np.concatenate([gi, ii])
    j = np.concatenate([gj, jj])
    genuine = np.concatenate([np.ones(gi.size, bool), np.zeros(ii.size, bool)])
    order = np.lexsort((j, i))
    return i[order], j[order], genuine[order]


def templates(descriptors: Any, identities: Any, *, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Template descriptors: the mean of ``size`` consecutive images of one identity, L2-normalised.

    Each identity's images are taken in the given order and cut into groups of ``size``; images
    left over that do not fill a group are dropped. The raw descriptors are averaged, then the mean
    is L2-normalised. Templates are ordered by the position of their first image, so ``size=1``
    gives the (L2-normalised) images themselves in their original order. Returns
    ``(template_descriptors [t, dim] float64, template_identities [t])``, the identities with the
    values (and dtype) given.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ParameterError(f"template size must be a positive integer, got {size!r}")
    x = _as_matrix(descriptors, "descriptors")
    ids = _as_labels(identities, "identities")
    if ids.size != x.shape[0]:
        raise ParameterError(
            f"identities has {ids.size} entries but descriptors has {x.shape[0]} rows"
        )
    codes = _identity_codes(ids)
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    groups = []
    for members in np.split(order, bounds):
        full = members.size - members.size % size
        if full:
            groups.append(members[:full].reshape(-1, size))
    if not groups:
        return np.zeros((0, x.shape[1])), ids[:0]
    g = np.concatenate(groups)
    g = g[np.argsort(g[:, 0], kind="stable")]
    return l2_normalize(x[g].mean(axis=1)), ids[g[:, 0]]


#: Impostor comparisons kept at most (about, for templates) when a test set has more: every pair
#: of up to ~1400 images.
MAX_IMPOSTORS = 1_000_000

#: Genuine comparisons per identity of k-image templates (``template_splits``): every way of
#: cutting 10 images into two 5-image templates, C(10, 5) / 2 = 126.
TEMPLATE_SPLITS = 126


def _subsets(n: int, size: int, count: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """``count`` distinct ``size``-subsets of ``range(n)`` (all of them when there are no more),
    each sorted; enumerated in lexicographic order, or drawn uniformly without replacement."""
    if math.comb(n, size) <= count:
        return list(itertools.combinations(range(n), size))
    found: dict[tuple[int, ...], None] = {}
    while len(found) < count:
        found.setdefault(tuple(sorted(rng.choice(n, size, replace=False).tolist())))
    return list(found)


def _splits(n: int, size: int, count: int, rng: np.random.Generator) -> list[tuple[tuple, tuple]]:
    """``count`` distinct unordered pairs of disjoint ``size``-subsets of ``range(n)`` (all of them
    when there are no more): enumerated, or drawn uniformly without replacement."""
    total = math.comb(n, size) * math.comb(n - size, size) // 2
    if total <= count:
        return [
            (a, b)
            for a in itertools.combinations(range(n), size)
            for b in itertools.combinations(sorted(set(range(n)) - set(a)), size)
            if a < b
        ]
    found: dict[tuple[tuple, tuple], None] = {}
    while len(found) < count:
        perm = rng.permutation(n)
        a, b = tuple(sorted(perm[:size].tolist())), tuple(sorted(perm[size : 2 * size].tolist()))
        found.setdefault((a, b) if a < b else (b, a))
    return list(found)


def template_splits(
    descriptors: Any,
    identities: Any,
    *,
    size: int,
    splits: int = TEMPLATE_SPLITS,
    max_impostors: int | None = MAX_IMPOSTORS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Comparisons of disjoint ``size``-image templates, as many for every identity as its images
    allow, up to ``splits``.

    A template is the mean of ``size`` images' raw descriptors, L2-normalised (as in
    :func:`templates`). Genuine: for every identity with at least ``2 * size`` images, ``splits``
    different ways of drawing two disjoint templates from its images (every way when there are
    fewer: 126 for 10 images and ``size=5``), each one comparison. Impostor: every identity with
    at least ``size`` images holds ``splits`` templates of its own, drawn apart from the genuine
    ones (distinct random subsets of its images, or all of them when there are fewer); every two
    identities are compared ``splits`` times (or as often as their templates allow), on distinct
    template pairs drawn at random. With ``max_impostors`` the comparisons per two identities are
    cut to ``max_impostors // pairs of identities``, at least one, so the total stays near the
    cap. Equal counts make every identity, and every two identities, weigh the same in the EER.
    Draws are reproducible from ``seed``.

    Returns ``(scores, a, b, genuine)``: float64 cosine scores, the identity codes of the two sides
    (positions in ``np.unique(identities)``) and a boolean array; genuine comparisons first.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ParameterError(f"template size must be a positive integer, got {size!r}")
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ParameterError(f"splits must be a positive integer, got {splits!r}")
    if max_impostors is not None and max_impostors < 0:
        raise ParameterError(f"max_impostors must be >= 0 or None, got {max_impostors}")
    x = _as_matrix(descriptors, "descriptors")
    codes = _identity_codes(identities)
    if codes.size != x.shape[0]:
        raise ParameterError(
            f"identities has {codes.size} entries but descriptors has {x.shape[0]} rows"
        )
    rng = np.random.default_rng(seed)

    def mean(members: np.ndarray, subsets: Sequence[tuple]) -> np.ndarray:
        return l2_normalize(x[members[np.asarray(subsets)]].mean(axis=1))

    scores, a, b, held = [], [], [], {}
    for code in range(int(codes.max()) + 1 if codes.size else 0):
        members = np.flatnonzero(codes == code)
        if members.size >= 2 * size:
            pairs = _splits(members.size, size, splits, rng)
            first = mean(members, [p[0] for p in pairs])
            second = mean(members, [p[1] for p in pairs])
            scores.append(np.einsum("ij,ij->i", first, second))
            a.append(np.full(len(pairs), code))
        if members.size >= size:
            # not the genuine splits' templates: those all hold the identity's first image
            held[code] = mean(members, _subsets(members.size, size, splits, rng))
    genuine_count = sum(len(s) for s in scores)
    owners = sorted(held)
    n_pairs = len(owners) * (len(owners) - 1) // 2
    per_pair = splits
    if max_impostors is not None and n_pairs:
        per_pair = min(splits, max(1, max_impostors // n_pairs))
    for pos, i in enumerate(owners):
        for j in owners[pos + 1 :]:
            li, lj = len(held[i]), len(held[j])
            flat = rng.choice(li * lj, size=min(per_pair, li * lj), replace=False)
            scores.append(np.einsum("ij,ij->i", held[i][flat // lj], held[j][flat % lj]))
            a.append(np.full(flat.size, i))
            b.append(np.full(flat.size, j))
    if not scores:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0), empty, empty, np.zeros(0, dtype=bool)
    a_all = np.concatenate(a).astype(np.int64)
    b_all = np.concatenate([a_all[:genuine_count], *b]).astype(np.int64)
    genuine = np.arange(a_all.size) < genuine_count
    return np.concatenate(scores), a_all, b_all, genuine
