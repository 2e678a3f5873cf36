"""Retrieval metrics (Recall@K, MAP@R, R-precision, NMI) against a float64 brute force of their definitions and
against pytorch-metric-learning's AccuracyCalculator, ties included."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluation import EvaluationError
from reid.evaluation.retrieval import evaluate_retrieval, kmeans, normalized_mutual_info


def brute_force(q, q_labels, g, g_labels, ks, leave_one_out, metric):
    """One query at a time in float64: stable argsort of its distances, its own image dropped (leave-one-out)."""
    q, g = np.asarray(q, np.float64), np.asarray(g, np.float64)
    if metric == "cosine":
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
        dist = 1.0 - q @ g.T
    else:
        dist = np.sqrt(((q[:, None, :] - g[None, :, :]) ** 2).sum(-1))
    recall, r_prec, ap_r = {k: [] for k in ks}, [], []
    for i in range(len(q)):
        order = [j for j in np.argsort(dist[i], kind="stable") if not (leave_one_out and j == i)]
        same = np.asarray(g_labels)[order] == q_labels[i]
        r = int(same.sum())
        if r == 0:
            continue
        for k in ks:
            recall[k].append(bool(same[:k].any()))
        r_prec.append(same[:r].sum() / r)
        ap_r.append(sum(same[:j + 1].sum() / (j + 1) for j in range(r) if same[j]) / r)
    out = {f"recall@{k}": float(np.mean(recall[k])) for k in ks}
    out.update({"map@r": float(np.mean(ap_r)), "r_precision": float(np.mean(r_prec)), "num_valid_query": len(ap_r)})
    return out


def assert_metrics(ours, reference):
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def case(seed, n=160, dim=8, classes=20, grid=False):
    """Random embeddings; ``grid``: small integers, so that many distances tie exactly (in float32 too)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    feats = rng.normal(size=(classes, dim))[labels] + rng.normal(size=(n, dim))  # classes: metrics far from 0 and 1
    return (np.rint(feats) if grid else feats).astype(np.float32), labels


@pytest.mark.parametrize("grid", [False, True])
@pytest.mark.parametrize("chunk", [None, 7])
@pytest.mark.parametrize("ks", [(1, 2, 4, 8), (1, 10, 500)])
def test_leave_one_out_equals_brute_force(grid, chunk, ks):
    """Only the nearest max(K, R) items of a query can change a metric: small ks rank those (ties at the cut
    included), K beyond the gallery ranks every item."""
    feats, labels = case(0, grid=grid)
    labels[-1] = 99  # a class with one image: no true match, skipped
    metric = "euclidean" if grid else "cosine"
    ours = evaluate_retrieval(feats, labels, ks, metric=metric, chunk_size=chunk)
    assert_metrics(ours, brute_force(feats, labels, feats, labels, ks, True, metric))
    assert (ours["num_query"], ours["num_gallery"]) == (160, 160) and ours["num_valid_query"] < 160
    assert ours.get("recall@500", 1.0) == 1.0


@pytest.mark.parametrize("grid", [False, True])
def test_query_gallery_equals_brute_force(grid):
    feats, labels = case(1, n=180, grid=grid)
    q, q_labels, g, g_labels = feats[:50], labels[:50], feats[50:], labels[50:]
    q_labels[0] = 77  # not in the gallery: skipped
    metric = "euclidean" if grid else "cosine"
    ours = evaluate_retrieval(q, q_labels, (1, 10, 20), gallery_feats=g, gallery_labels=g_labels, metric=metric,
                              chunk_size=9)
    assert_metrics(ours, brute_force(q, q_labels, g, g_labels, (1, 10, 20), False, metric))
    assert (ours["num_query"], ours["num_gallery"]) == (50, 130) and ours["num_valid_query"] < 50


def test_perfect_and_ranked_examples():
    """Hand-checked: classes on separate points are retrieved perfectly; a known ranking gives known numbers."""
    feats = np.repeat(np.eye(4, dtype=np.float32), 3, axis=0)
    perfect = evaluate_retrieval(feats, np.repeat(np.arange(4), 3), (1, 2))
    assert perfect["recall@1"] == perfect["map@r"] == perfect["r_precision"] == 1.0
    # One query at 0 against a gallery on a line: labels by distance 1 (A), 2 (B), 3 (A), 4 (A) -> R = 3, true
    # matches at ranks 1, 3, 4: R-precision 2/3, AP@R (1/1 + 2/3) / 3.
    result = evaluate_retrieval(np.zeros((1, 1)), [0], (1, 2), gallery_feats=np.arange(1.0, 5.0)[:, None],
                                gallery_labels=[0, 1, 0, 0], metric="euclidean")
    assert result["r_precision"] == pytest.approx(2 / 3)
    assert result["map@r"] == pytest.approx((1 + 2 / 3) / 3)
    assert result["recall@1"] == 1.0


def test_identical_features_rank_by_gallery_index():
    """All distances tie: the ranking is the gallery order (the query's own image, wherever it falls, dropped)."""
    labels = np.array([0, 1, 0, 2, 1, 0, 2, 2, 1, 0])
    feats = np.ones((10, 3), dtype=np.float32)
    for ks in [(1,), (1, 2, 20)]:
        assert_metrics(evaluate_retrieval(feats, labels, ks), brute_force(feats, labels, feats, labels, ks, True,
                                                                          "cosine"))


def test_input_errors():
    feats, labels = case(0, n=10)
    with pytest.raises(EvaluationError, match="negative class ids"):
        evaluate_retrieval(feats, labels - 5)
    with pytest.raises(EvaluationError, match="9 entries for 10"):
        evaluate_retrieval(feats, labels[:9])
    with pytest.raises(EvaluationError, match="ks must be positive"):
        evaluate_retrieval(feats, labels, ks=(0, 1))
    with pytest.raises(EvaluationError, match="none of the 10 queries"):
        evaluate_retrieval(feats, np.arange(10))
    with pytest.raises(EvaluationError, match="give both gallery_feats and gallery_labels"):
        evaluate_retrieval(feats, labels, gallery_feats=feats)
    with pytest.raises(EvaluationError, match="unknown distance metric"):
        evaluate_retrieval(feats, labels, metric="manhattan")


def test_nmi_against_sklearn_and_kmeans_on_separated_clusters():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for n, a, b in [(200, 7, 5), (50, 1, 3), (30, 1, 1)]:
        y, c = rng.integers(0, a, n), rng.integers(0, b, n)
        assert normalized_mutual_info(y, c) == pytest.approx(sklearn_metrics.normalized_mutual_info_score(y, c),
                                                             abs=1e-12)
    centers = torch.from_numpy(rng.normal(size=(6, 16)) * 10)
    labels = torch.arange(6).repeat_interleave(10)
    feats = centers[labels] + 0.01 * torch.randn(60, 16, dtype=torch.float64)
    for seed in range(5):  # Lloyd's fixed point: every sample is nearest to the mean of its own cluster
        clusters = torch.from_numpy(kmeans(feats, 6, seed=seed))
        means = torch.stack([feats[clusters == c].mean(0) for c in clusters.unique()])
        nearest = torch.cdist(feats, means).argmin(1)
        assert torch.equal(clusters.unique()[nearest], clusters)
    nmi = [evaluate_retrieval(feats, labels, (1,), nmi=True, nmi_seed=seed)["nmi"] for seed in range(5)]
    assert min(nmi) > 0.8  # random initialisation (as faiss's) may merge two of the 6 groups


# -- pytorch-metric-learning -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def accuracy_calculator():
    from tests.support.peer_models import require

    require("pytorch_metric_learning")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    # faiss's exact k-NN (PML's default knn_func) orders equal distances by index, as reid does.
    return AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r", "r_precision"),
                              k="max_bin_count", device=torch.device("cpu"))


def _compare(ours, theirs):
    print(f"\n[pml] reid {ours} vs pml {theirs}")
    assert ours["recall@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-12)
    assert ours["map@r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-12)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-12)


@pytest.mark.parametrize("grid", [False, True])
def test_leave_one_out_equals_pml(accuracy_calculator, grid):
    """PML ranks by squared L2 (faiss): on L2-normalised features the cosine order; on the integer grid the
    Euclidean order with exact ties. Classes of one image are skipped by both."""
    feats, labels = case(5, n=400, dim=6 if grid else 16, classes=60, grid=grid)
    if not grid:
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    metric = "euclidean" if grid else "cosine"
    _compare(evaluate_retrieval(feats, labels, (1,), metric=metric, chunk_size=64),
             accuracy_calculator.get_accuracy(feats, labels))


@pytest.mark.parametrize("grid", [False, True])
def test_query_gallery_equals_pml(accuracy_calculator, grid):
    feats, labels = case(6, n=420, dim=6, classes=30, grid=grid)
    if not grid:
        feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    q, q_labels, g, g_labels = feats[:120], labels[:120], feats[120:], labels[120:]
    metric = "euclidean" if grid else "cosine"
    _compare(evaluate_retrieval(q, q_labels, (1,), gallery_feats=g, gallery_labels=g_labels, metric=metric),
             accuracy_calculator.get_accuracy(q, q_labels, g, g_labels))
