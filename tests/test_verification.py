"""Tests of facepruning.verification against sklearn, brute force and hand-made cases."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from facepruning import verification as v
from facepruning.errors import DataError, ParameterError


def _random_set(seed: int, n_gen: int = 300, n_imp: int = 700, decimals: int | None = None):
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(1.0, 1.0, n_gen), rng.normal(0.0, 1.0, n_imp)]
    if decimals is not None:  # heavy ties, including genuine-impostor ties
        s = np.round(s, decimals)
    g = np.r_[np.ones(n_gen, bool), np.zeros(n_imp, bool)]
    perm = rng.permutation(s.size)
    return s[perm], g[perm]


def _order_to_scores(order: str):
    """'GGIG...' from highest to lowest score -> (scores, genuine), all scores distinct."""
    n = len(order)
    scores = np.arange(n, 0, -1, dtype=float)
    genuine = np.array([c == "G" for c in order])
    return scores, genuine


def _eer_reference(s, g):
    """EER from sklearn's ROC: FAR - FRR is strictly increasing along it, interpolate its zero."""
    fpr, tpr, _ = roc_curve(g, s, drop_intermediate=False)
    return float(np.interp(0.0, fpr - (1.0 - tpr), fpr))


def _tar_at_far_brute(s, g, far):
    best = 0.0
    for t in np.r_[np.inf, np.unique(s)]:
        acc = s >= t
        if acc[~g].mean() <= far:
            best = max(best, acc[g].mean())
    return best


# ------------------------------------------------------------------------------------------------
# ROC, AUC
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 1, 0])
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_and_auc_match_sklearn(seed, decimals):
    s, g = _random_set(seed, decimals=decimals)
    far, tar, thr = v.roc(s, g)
    fpr, tpr, sk_thr = roc_curve(g, s, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tar, tpr, rtol=0, atol=1e-15)
    assert thr[0] == np.inf
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert len(thr) == len(np.unique(s)) + 1
    assert v.roc_auc(s, g) == pytest.approx(roc_auc_score(g, s), abs=1e-12)


def test_roc_accepts_torch_and_int_labels():
    s, g = _random_set(3, n_gen=20, n_imp=30, decimals=1)
    far, tar, _ = v.roc(torch.tensor(s, dtype=torch.float32), torch.tensor(g.astype(int)))
    far2, tar2, _ = v.roc(s.astype(np.float32), g)
    np.testing.assert_array_equal(far, far2)
    np.testing.assert_array_equal(tar, tar2)
    far, tar, _ = v.roc(torch.tensor(s, dtype=torch.bfloat16), g)
    far2, tar2, _ = v.roc(torch.tensor(s, dtype=torch.bfloat16).float().numpy(), g)
    np.testing.assert_array_equal(far, far2)
    np.testing.assert_array_equal(tar, tar2)


def test_metrics_reject_bad_input():
    with pytest.raises(ParameterError):
        v.eer([0.1, 0.2], [True, True])  # no impostor
    with pytest.raises(ParameterError):
        v.roc([0.1, np.nan], [True, False])
    with pytest.raises(ParameterError):
        v.roc([0.1, 0.2], [2, 0])
    with pytest.raises(ParameterError):
        v.roc([0.1, 0.2, 0.3], [1, 0])


# ------------------------------------------------------------------------------------------------
# EER
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ("GGII", 0.0),  # perfectly separated
        ("GGGIGIII", 0.25),  # 1 of 4 impostors above 1 of 4 genuines: FAR = FRR = 1/4
        ("GIGI", 0.5),  # threshold between them: FAR = FRR = 1/2
        ("IIGG", 1.0),  # perfectly inverted
        ("IGII", 1 / 3),  # crossing on a vertical ROC segment: FAR = 1/3, FRR = 1/3
        ("GIIG", 0.5),
    ],
)
def test_eer_hand_made(order, expected):
    s, g = _order_to_scores(order)
    assert v.eer(s, g) == pytest.approx(expected, abs=1e-15)


def test_eer_all_tied_is_half():
    assert v.eer(np.full(7, 0.3), [1, 0, 0, 1, 0, 1, 1]) == pytest.approx(0.5)


def test_eer_tie_across_classes_interpolates():
    # genuine {1.0, 0.5}, impostor {0.5, 0.0}: the tie at 0.5 moves FAR and TAR together
    # from (0, 1/2) to (1/2, 1); FAR = FRR at the middle of that segment: 1/4
    assert v.eer([1.0, 0.5, 0.5, 0.0], [1, 1, 0, 0]) == pytest.approx(0.25)


@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eer_matches_sklearn_interpolation(seed, decimals):
    s, g = _random_set(seed, decimals=decimals)
    assert v.eer(s, g) == pytest.approx(_eer_reference(s, g), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# TAR@FAR
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("far", [1e-3, 2e-3, 1e-2, 0.05, 0.1, 0.5, 1.0])
def test_tar_at_far_matches_brute_force(far, decimals):
    s, g = _random_set(5, n_gen=200, n_imp=1000, decimals=decimals)
    assert v.tar_at_far(s, g, far) == pytest.approx(_tar_at_far_brute(s, g, far), abs=1e-15)


def test_tar_at_far_none_when_unmeasurable():
    s, g = _random_set(6, n_gen=50, n_imp=999)
    assert v.tar_at_far(s, g, 1e-3) is None
    s, g = _random_set(6, n_gen=50, n_imp=1000)
    assert v.tar_at_far(s, g, 1e-3) is not None
    s, g = _order_to_scores("G" * 5 + "I" * 9)
    assert v.tar_at_far(s, g, 0.1) is None
    s, g = _order_to_scores("G" * 5 + "I" * 10)
    assert v.tar_at_far(s, g, 0.1) == 1.0
    with pytest.raises(ParameterError):
        v.tar_at_far(s, g, 0.0)


def test_tar_at_far_tie_group_is_not_split():
    # 10 impostors, two of them tied with a genuine at 0.5: FAR 0.1 cannot include that tie
    s = np.r_[0.9, 0.5, 0.5, 0.5, np.linspace(0.0, 0.4, 8)]
    g = np.r_[True, True, False, False, np.zeros(8, bool)]
    assert v.tar_at_far(s, g, 0.1) == 0.5
    assert v.tar_at_far(s, g, 0.2) == 1.0


# ------------------------------------------------------------------------------------------------
# accuracy
# ------------------------------------------------------------------------------------------------
def _best_threshold_brute(s, g):
    """Most accurate decision (strictest on ties), threshold in the middle of its score gap."""
    cands = np.r_[np.inf, np.sort(np.unique(s))[::-1]]  # strictest first
    best_acc, best_k = -1.0, None
    for k, t in enumerate(cands):
        acc = np.mean((s >= t) == g)
        if acc > best_acc:
            best_acc, best_k = acc, k
    if 0 < best_k < len(cands) - 1:
        return best_acc, (cands[best_k] + cands[best_k + 1]) / 2
    return best_acc, cands[best_k]


@pytest.mark.parametrize("decimals", [None, 1])
def test_best_threshold_accuracy_brute_force(decimals):
    s, g = _random_set(7, decimals=decimals)
    acc, thr = v.best_threshold_accuracy(s, g)
    ref_acc, ref_thr = _best_threshold_brute(s, g)
    assert acc == pytest.approx(ref_acc, abs=1e-15)
    assert thr == ref_thr
    assert np.mean((s >= thr) == g) == pytest.approx(acc)


def test_best_threshold_accuracy_hand_made():
    s, g = _order_to_scores("GGGIGIII")  # best: accept the top 3 or top 5: 7/8 correct
    acc, thr = v.best_threshold_accuracy(s, g)
    assert acc == 0.875
    assert thr == (s[2] + s[3]) / 2  # the stricter one, between 3rd and 4th score
    assert v.best_threshold_accuracy([0.9, 0.1], [0, 1]) == (0.5, np.inf)  # reject all wins
    # accepting everything wins: the threshold is the lowest score
    assert v.best_threshold_accuracy([0.9, 0.5, 0.4, 0.1], [0, 1, 1, 1]) == (0.75, 0.1)


def _kfold_reference(s, g, fold_ids):
    accs = []
    for f in np.unique(fold_ids):
        test = fold_ids == f
        _, t = _best_threshold_brute(s[~test], g[~test])
        accs.append(np.mean((s[test] >= t) == g[test]))
    return np.mean(accs), np.std(accs)


@pytest.mark.parametrize("decimals", [None, 1])
def test_kfold_accuracy_matches_independent_loop(decimals):
    s, g = _random_set(8, n_gen=300, n_imp=300, decimals=decimals)
    fold_ids = np.repeat(np.arange(10), 60)
    mean, std = v.kfold_accuracy(s, g, fold_ids)
    ref_mean, ref_std = _kfold_reference(s, g, fold_ids)
    assert mean == pytest.approx(ref_mean, abs=1e-12)
    assert std == pytest.approx(ref_std, abs=1e-12)
    assert std > 0
    # an int means contiguous equal blocks
    assert v.kfold_accuracy(s, g, 10) == (mean, std)


def test_kfold_accuracy_separable_is_perfect():
    s = np.r_[np.linspace(0.6, 1.0, 50), np.linspace(-1.0, 0.4, 50)]
    g = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    folds = np.tile(np.arange(5), 20)
    assert v.kfold_accuracy(s, g, folds) == (1.0, 0.0)


def test_identification_accuracy():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0]])
    labels = np.array([1, 0, 1, 2])
    assert v.identification_accuracy(logits, labels) == 0.5
    assert v.identification_accuracy(torch.tensor(logits), torch.tensor(labels)) == 0.5
    with pytest.raises(ParameterError):
        v.identification_accuracy(logits, labels[:3])


# ------------------------------------------------------------------------------------------------
# descriptors, pairs, templates
# ------------------------------------------------------------------------------------------------
def test_l2_normalize_and_cosine():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 4))
    b = rng.normal(size=(3, 4))
    n = v.l2_normalize(np.vstack([a, np.zeros((1, 4))]))
    np.testing.assert_allclose(np.linalg.norm(n[:6], axis=1), 1.0)
    np.testing.assert_array_equal(n[6], 0.0)
    ref = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
    np.testing.assert_allclose(v.cosine_similarity_matrix(a, b), ref, atol=1e-14)
    i, j = np.array([0, 5, 2]), np.array([1, 3, 2])
    np.testing.assert_allclose(
        v.pair_scores(torch.tensor(a), i, j),
        [v.cosine_similarity_matrix(a, a)[x, y] for x, y in zip(i, j, strict=True)],
        atol=1e-14,
    )


@pytest.mark.parametrize(("n_ids", "m"), [(4, 3), (7, 5), (3, 1)])
def test_all_pairs_counts_and_labels(n_ids, m):
    rng = np.random.default_rng(1)
    identities = rng.permutation(np.repeat([f"id{k}" for k in range(n_ids)], m))
    i, j, gen = v.all_pairs(identities)
    total = n_ids * m
    assert gen.sum() == n_ids * math.comb(m, 2)
    assert len(i) == math.comb(total, 2)
    assert np.all(i < j)
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(combinations(range(total), 2))
    np.testing.assert_array_equal(gen, identities[i] == identities[j])


def test_all_pairs_max_impostors():
    identities = np.repeat(np.arange(30), 4)  # 120 images: 180 genuine, 6960 impostor pairs
    i, j, gen = v.all_pairs(identities, max_impostors=500, seed=3)
    assert gen.sum() == 30 * 6
    assert (~gen).sum() == 500
    np.testing.assert_array_equal(gen, identities[i] == identities[j])
    assert np.all(i < j)
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == len(i)
    i2, j2, _ = v.all_pairs(identities, max_impostors=500, seed=3)
    np.testing.assert_array_equal(i, i2)
    np.testing.assert_array_equal(j, j2)
    i3, j3, _ = v.all_pairs(identities, max_impostors=500, seed=4)
    assert not (np.array_equal(i, i3) and np.array_equal(j, j3))
    # more than half of all impostors (enumerate-and-subsample branch), and more than all
    _, _, gen = v.all_pairs(identities, max_impostors=5000, seed=0)
    assert (~gen).sum() == 5000
    _, _, gen = v.all_pairs(identities, max_impostors=10**9)
    assert (~gen).sum() == 6960


def test_all_pairs_subsample_is_uniform():
    identities = np.array([0, 0, 1, 1, 2, 2])  # 12 impostor pairs
    counts: dict[tuple[int, int], int] = {}
    for seed in range(600):
        i, j, gen = v.all_pairs(identities, max_impostors=4, seed=seed)
        for pair in zip(i[~gen].tolist(), j[~gen].tolist(), strict=True):
            counts[pair] = counts.get(pair, 0) + 1
    assert len(counts) == 12
    expected = 600 * 4 / 12
    assert all(abs(c - expected) < 0.25 * expected for c in counts.values())


def test_all_pairs_scales_to_10k_images():
    identities = np.repeat(np.arange(1000), 10)
    i, j, gen = v.all_pairs(identities, max_impostors=200_000, seed=0)
    assert gen.sum() == 1000 * 45
    assert (~gen).sum() == 200_000
    assert np.all(identities[i[~gen]] != identities[j[~gen]])


def test_templates_manual_mean():
    rng = np.random.default_rng(2)
    identities = np.array(["b", "a", "b", "a", "b", "a", "b", "c", "a", "b", "a"])
    x = rng.normal(size=(identities.size, 5))
    t_x, t_ids = v.templates(x, identities, size=2)
    # b: 0,2 | 4,6 | (9 dropped); a: 1,3 | 5,8 | (10 dropped); c: (7 dropped)
    groups = [(0, 2), (1, 3), (4, 6), (5, 8)]
    ref = np.array([x[list(gr)].mean(axis=0) for gr in groups])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(t_x, ref, atol=1e-14)
    assert t_ids.tolist() == ["b", "a", "b", "a"]
    t1, ids1 = v.templates(x, identities, size=1)
    np.testing.assert_allclose(t1, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-14)
    np.testing.assert_array_equal(ids1, identities)
    t5, ids5 = v.templates(x, identities, size=5)
    assert ids5.tolist() == ["b", "a"]  # c has too few images
    np.testing.assert_allclose(t5[1], v.l2_normalize(x[[1, 3, 5, 8, 10]].mean(axis=0)))
    t3, ids3 = v.templates(x, identities, size=3)
    assert ids3.tolist() == ["b", "a"]
    np.testing.assert_allclose(t3[0], v.l2_normalize(x[[0, 2, 4]].mean(axis=0)))
    with pytest.raises(ParameterError):
        v.templates(x, identities, size=0)


# ------------------------------------------------------------------------------------------------
# protocol runners
# ------------------------------------------------------------------------------------------------
def _synthetic(n_ids=12, per_id=10, dim=16, noise=0.8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    identities = np.repeat(np.arange(n_ids), per_id)
    x = centres[identities] + noise * rng.normal(size=(identities.size, dim))
    return x, identities


def test_verification_report_blocks_match_direct_metrics():
    x, ids = _synthetic()
    report = v.verification_report(x, ids)
    assert list(report) == ["t1", "t5"]
    keys = ["eer", "auc", "acc", "tar@far=0.001", "tar@far=0.01", "tar@far=0.1"]
    assert list(report["t1"]) == [*keys, "n_genuine", "n_impostor"]
    t1 = report["t1"]
    assert t1["n_genuine"] == 12 * 45
    assert t1["n_impostor"] == math.comb(120, 2) - 12 * 45
    i, j, g = v.all_pairs(ids)
    s = v.pair_scores(x, i, j)
    assert t1["eer"] == pytest.approx(_eer_reference(s, g), abs=1e-12)
    assert t1["auc"] == pytest.approx(roc_auc_score(g, s), abs=1e-12)
    assert t1["acc"] == pytest.approx(_best_threshold_brute(s, g)[0], abs=1e-15)
    assert t1["tar@far=0.01"] == pytest.approx(_tar_at_far_brute(s, g, 0.01), abs=1e-15)
    assert t1["tar@far=0.001"] == pytest.approx(_tar_at_far_brute(s, g, 0.001), abs=1e-15)
    t5 = report["t5"]
    # every split of an identity's 10 images into two 5-image templates; as many impostors per
    # two identities
    assert (t5["n_genuine"], t5["n_impostor"]) == (12 * 126, math.comb(12, 2) * 126)
    assert t5["tar@far=0.001"] is not None  # 8,316 impostors measure FAR 0.1%
    # 5-image templates average the noise away: they must do better here
    assert t5["eer"] < t1["eer"]

    flat = v.flatten_report(report)
    assert flat["t1/eer"] == t1["eer"]
    assert flat["t5/tar@far=0.01"] == t5["tar@far=0.01"]
    assert len(flat) == 16


def test_verification_report_lfw_block():
    x, ids = _synthetic(n_ids=20, per_id=6, noise=1.2, seed=1)
    rng = np.random.default_rng(0)
    rows, seen = [], set()
    for fold in range(10):
        while len(rows) < 40 * (fold + 1):  # distinct pairs, about half genuine
            if len(rows) % 2:
                a, b = sorted(rng.choice(len(ids), size=2, replace=False))
            else:
                a, b = sorted(rng.choice(np.flatnonzero(ids == rng.integers(20)), 2, False))
            if (a, b) not in seen:
                seen.add((a, b))
                rows.append((fold, a, b, int(ids[a] == ids[b])))
    arr = np.array(rows)
    pairs = {"fold": arr[:, 0], "a": arr[:, 1], "b": arr[:, 2], "genuine": arr[:, 3]}
    report = v.verification_report(x, ids, template_sizes=(), pairs=pairs)
    assert list(report) == ["lfw"]
    lfw = report["lfw"]
    assert list(lfw) == ["accuracy_mean", "accuracy_std", "eer", "auc"]
    s = np.array([x[a] @ x[b] / np.linalg.norm(x[a]) / np.linalg.norm(x[b]) for _, a, b, _ in rows])
    g = arr[:, 3].astype(bool)
    ref_mean, ref_std = _kfold_reference(s, g, arr[:, 0])
    assert lfw["accuracy_mean"] == pytest.approx(ref_mean, abs=1e-12)
    assert lfw["accuracy_std"] == pytest.approx(ref_std, abs=1e-12)
    assert lfw["auc"] == pytest.approx(roc_auc_score(g, s), abs=1e-12)
    assert lfw["eer"] == pytest.approx(_eer_reference(s, g), abs=1e-12)

    bad = dict(pairs, genuine=1 - arr[:, 3])
    with pytest.raises(DataError):
        v.verification_report(x, ids, template_sizes=(), pairs=bad)
    with pytest.raises(DataError):
        v.verification_report(x, ids, template_sizes=(), pairs={"a": arr[:, 1]})


def _pose_set(n_ids=10, seed=0):
    """Per identity 2 F, 2 Q, 2 P templates of 5 images; profile images are much noisier."""
    rng = np.random.default_rng(seed)
    dim = 32
    centres = rng.normal(size=(n_ids, dim))
    noise = {"F": 0.05, "Q": 0.6, "P": 2.5}
    x, ids, poses, tids = [], [], [], []
    for k in range(n_ids):
        for pose in "FFQQPP":
            tid = f"{k}-{len(tids) // 5}"
            for _ in range(5):
                x.append(centres[k] + noise[pose] * rng.normal(size=dim))
                ids.append(k)
                poses.append(pose)
                tids.append(tid)
    return np.array(x), np.array(ids), np.array(poses), np.array(tids)


def test_pose_blocks():
    x, ids, poses, tids = _pose_set()
    report = v.verification_report(
        x, ids, template_sizes=(), poses=poses, template_ids=tids, fars=(0.001, 0.01, 0.1)
    )
    names = ["pose/F-F", "pose/F-Q", "pose/F-P", "pose/Q-Q", "pose/Q-P", "pose/P-P"]
    assert list(report) == names
    # independent computation: templates by explicit mean over each template id
    t_names = list(dict.fromkeys(tids))
    t_x = np.array([x[tids == t].mean(axis=0) for t in t_names])
    t_x /= np.linalg.norm(t_x, axis=1, keepdims=True)
    t_id = np.array([ids[tids == t][0] for t in t_names])
    t_pose = np.array([poses[tids == t][0] for t in t_names])
    for name in names:
        p, q = name.split("/")[1].split("-")
        s, g = [], []
        for a in range(len(t_names)):
            for b in range(len(t_names)):
                if t_pose[a] != p or t_pose[b] != q or (p == q and a >= b):
                    continue
                s.append(t_x[a] @ t_x[b])
                g.append(t_id[a] == t_id[b])
        s, g = np.array(s), np.array(g)
        block = report[name]
        assert list(block) == [
            "eer",
            "tar@far=0.001",
            "tar@far=0.01",
            "tar@far=0.1",
            "n_genuine",
            "n_impostor",
        ]
        assert (block["n_genuine"], block["n_impostor"]) == (g.sum(), (~g).sum())
        assert block["eer"] == pytest.approx(_eer_reference(s, g), abs=1e-12)
        assert block["tar@far=0.1"] == pytest.approx(_tar_at_far_brute(s, g, 0.1), abs=1e-15)
    assert report["pose/F-F"]["n_genuine"] == 10  # one pair of F templates per identity
    assert report["pose/F-Q"]["n_genuine"] == 40  # 2 x 2 per identity
    assert report["pose/F-Q"]["n_impostor"] == 20 * 20 - 40
    assert report["pose/F-F"]["eer"] == 0.0
    assert report["pose/P-P"]["eer"] > report["pose/F-F"]["eer"]
    # 180 F-F impostors measure FAR 1% but not 0.1%
    assert report["pose/F-F"]["tar@far=0.001"] is None
    assert report["pose/F-F"]["tar@far=0.01"] == 1.0


def test_pose_blocks_reject_bad_templates():
    x, ids, poses, tids = _pose_set(n_ids=3)
    mixed = tids.copy()
    mixed[10] = mixed[0]  # a Q image joins an F template: that template mixes poses
    with pytest.raises(DataError):
        v.verification_report(x, ids, template_sizes=(), poses=poses, template_ids=mixed)
    bad_pose = poses.copy()
    bad_pose[0] = "3/4"
    with pytest.raises(DataError):
        v.verification_report(x, ids, template_sizes=(), poses=bad_pose, template_ids=tids)
    with pytest.raises(ParameterError):
        v.verification_report(x, ids, template_sizes=(), poses=poses)


def test_eer_threshold_is_where_false_accepts_first_reach_false_rejects():
    rng = np.random.default_rng(3)
    genuine = rng.random(400) < 0.2
    scores = rng.normal(size=400) + 1.5 * genuine
    t = v.eer_threshold(scores, genuine)

    def rates(threshold):
        accept = scores >= threshold
        return accept[~genuine].mean(), (~accept[genuine]).mean()

    far, frr = rates(t)
    assert far >= frr
    stricter = np.min(scores[scores > t])  # the next operating point, one score stricter
    far_s, frr_s = rates(stricter)
    assert far_s < frr_s
    # the EER lies between the two points' error rates
    e = v.eer(scores, genuine)
    assert min(far_s, frr) - 1e-12 <= e <= max(far, frr_s) + 1e-12


def _template(x, members):
    mean = x[list(members)].mean(axis=0)
    return mean / np.linalg.norm(mean)


def test_template_splits_compares_every_split_of_each_identity():
    x, ids = _synthetic(n_ids=4, per_id=10)
    scores, a, b, genuine = v.template_splits(x, ids, size=5)
    assert genuine.sum() == 4 * 126 and (~genuine).sum() == 6 * 126
    assert (a[genuine] == b[genuine]).all() and (a[~genuine] < b[~genuine]).all()
    for person in range(4):
        members = np.flatnonzero(ids == person)
        expected = sorted(
            float(_template(x, members[list(c)]) @ _template(x, np.delete(members, list(c))))
            for c in combinations(range(10), 5)
            if 0 in c  # each split once: the template holding the first image
        )
        got = np.sort(scores[genuine & (a == person)])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # impostors: two identities' templates, never mixing images of a third
    imp = scores[~genuine & (a == 0) & (b == 1)]
    assert imp.size == 126 and np.all(np.abs(imp) <= 1 + 1e-12)


def test_template_splits_samples_without_repeats_and_caps_impostors():
    x, ids = _synthetic(n_ids=5, per_id=13)  # C(13,5)*C(8,5)/2 = 36,036 splits: sampled
    scores, a, b, genuine = v.template_splits(x, ids, size=5, splits=40, max_impostors=100, seed=3)
    assert np.bincount(a[genuine]).tolist() == [40] * 5
    assert (~genuine).sum() == 10 * (100 // 10)  # the cap shared equally by the 10 pairs
    for person in range(5):  # 40 different splits: no genuine score repeats
        assert np.unique(scores[genuine & (a == person)]).size == 40
    again = v.template_splits(x, ids, size=5, splits=40, max_impostors=100, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(again, (scores, a, b, genuine), strict=True))
    # an identity with 5-9 images has no genuine comparison but still meets the others
    few = np.concatenate([ids[ids != 4], np.full(7, 4)])
    xs = np.concatenate([x[ids != 4], x[ids == 4][:7]])
    _, a, b, genuine = v.template_splits(xs, few, size=5, splits=40)
    assert 4 not in a[genuine] and (b[~genuine] == 4).sum() == 4 * 40
    with pytest.raises(ParameterError, match="splits must be a positive integer"):
        v.template_splits(x, ids, size=5, splits=0)
    with pytest.raises(ParameterError, match="max_impostors must be >= 0"):
        v.template_splits(x, ids, size=5, max_impostors=-1)


def test_template_splits_impostor_templates_are_random_subsets():
    """Image 0 of identity 0 is made to look like identity 1: impostor templates drawn as random
    5-of-10 subsets hold it about half the time, so about half of the 0-vs-1 comparisons score
    high (had every template held the first image, as the genuine splits' first halves do, all
    would). Template pairs never repeat, even when few templates exist (4 images, size 2)."""
    x, ids = _synthetic(n_ids=3, per_id=10, noise=0.1)
    x[0] = 100 * x[ids == 1].mean(axis=0)
    scores, a, b, genuine = v.template_splits(x, ids, size=5)
    pulled = scores[~genuine & (a == 0) & (b == 1)]
    assert pulled.size == 126 and 0.3 < np.mean(pulled > 0.9) < 0.7
    small, small_ids = _synthetic(n_ids=3, per_id=4)
    scores, a, b, genuine = v.template_splits(small, small_ids, size=2)
    assert np.bincount(a[genuine]).tolist() == [3, 3, 3]  # every split of 4 images into 2 + 2
    between = scores[~genuine & (a == 0) & (b == 1)]
    assert between.size == 36 and np.unique(between).size == 36  # all 6 x 6 template pairs
