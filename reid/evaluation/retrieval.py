"""Deep metric learning retrieval metrics: Recall@K, MAP@R, R-precision and NMI, block by block.

Protocol (Oh Song et al. 2016; the MS-loss and Circle-loss papers; Musgrave et al. 2020 for MAP@R):
- CUB-200-2011, Cars-196, Stanford Online Products: the test split is its own query and gallery; every image is
  a query against all the *other* test images (leave-one-out): `evaluate_retrieval(feats, labels)`.
- In-shop Clothes: the query list against the gallery list: `evaluate_retrieval(q_feats, q_labels,
  gallery_feats=g_feats, gallery_labels=g_labels)`.

For a query with R gallery items of its class (its true matches) and their 1-based ranks r_1 < ... < r_R:
- Recall@K = [r_1 <= K] (at least one true match among the K nearest), averaged over queries;
- R-precision = #{j : r_j <= R} / R (Musgrave et al.);
- MAP@R = 1/R * sum_{j : r_j <= R} j / r_j (precision at each true match within the first R, over R);
- NMI (on request): k-means of the query features into as many clusters as classes, then the normalised mutual
  information of clusters and classes, I(Y; C) / mean(H(Y), H(C)) (arithmetic mean, as scikit-learn's default
  and pytorch-metric-learning use). k-means is Lloyd's algorithm in torch from k distinct random samples
  (`nmi_seed`), at most 20 iterations as pytorch-metric-learning's faiss k-means, on L2-normalised features
  for the cosine metric; an emptied cluster keeps its centroid.

A query without any true match is skipped (counted in `num_valid_query`). Ranks come from
`reid.evaluation.match_ranks` on blocks of `iter_distance_blocks`: equal distances rank by gallery index, the
order faiss (pytorch-metric-learning's default k-NN) gives them too, and no query x gallery matrix is held at once.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reid.evaluation.distance import EvaluationError, as_features, check_metric, iter_distance_blocks
from reid.evaluation.rank import match_ranks

LabelsLike = torch.Tensor | np.ndarray | Iterable[int]
KMEANS_ITERATIONS = 20  # pytorch-metric-learning's FaissKMeans(niter=20)


def evaluate_retrieval(
    feats: torch.Tensor | np.ndarray,
    labels: LabelsLike,
    ks: Sequence[int] = (1, 2, 4, 8),
    *,
    gallery_feats: torch.Tensor | np.ndarray | None = None,
    gallery_labels: LabelsLike | None = None,
    metric: str = "cosine",
    nmi: bool = False,
    nmi_seed: int = 0,
    chunk_size: int | None = None,
) -> dict[str, float | int]:
    """Retrieval metrics of a test split: leave-one-out (CUB-200, Cars-196, SOP: each image against all the
    others) or, given `gallery_feats` and `gallery_labels` (In-shop), `feats` as queries against that gallery, from
    which nothing is removed.

    Returns fractions ``recall@K`` for each K of `ks`, ``map@r``, ``r_precision`` (and ``nmi`` of the query
    features when asked), with ``num_query``, ``num_gallery`` and ``num_valid_query`` (queries with a true match).
    `chunk_size` is the number of query rows per distance block (default: a device budget).
    """
    feats = as_features(feats, "feats")
    labels = _as_labels(labels, "labels", feats.shape[0])
    if (gallery_feats is None) != (gallery_labels is None):
        raise EvaluationError("give both gallery_feats and gallery_labels (query / gallery), or neither "
                              "(leave-one-out).")
    if gallery_feats is None:
        ids = torch.arange(feats.shape[0])
        return _retrieval(feats, labels, feats, labels, ks, metric, chunk_size, (ids, ids), nmi, nmi_seed)
    g_feats = as_features(gallery_feats, "gallery_feats")
    g_labels = _as_labels(gallery_labels, "gallery_labels", g_feats.shape[0])
    return _retrieval(feats, labels, g_feats, g_labels, ks, metric, chunk_size, None, nmi, nmi_seed)


def _as_labels(labels: LabelsLike, name: str, length: int) -> torch.Tensor:
    out = torch.as_tensor(labels if isinstance(labels, torch.Tensor) else np.asarray(labels))
    if out.dim() != 1 or out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise EvaluationError(f"{name} must be a 1-D array of integer class ids, got shape {tuple(out.shape)} "
                              f"{out.dtype}.")
    if out.numel() != length:
        raise EvaluationError(f"{name} has {out.numel()} entries for {length} feature rows; give one class id per "
                              f"image.")
    if out.numel() and int(out.min()) < 0:
        raise EvaluationError(f"{name} holds negative class ids (e.g. {int(out.min())}); class ids are >= 0 (reid "
                              f"reserves -1 for junk, which a retrieval benchmark does not have).")
    return out.to(torch.int64).cpu()


def _check_ks(ks: Sequence[int]) -> list[int]:
    ks = list(ks)
    if not ks or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in ks):
        raise EvaluationError(f"ks must be positive integers (e.g. 1, 2, 4, 8), got {ks}.")
    return sorted({int(k) for k in ks})


def _retrieval(q: torch.Tensor, q_labels: torch.Tensor, g: torch.Tensor, g_labels: torch.Tensor,
               ks: Sequence[int], metric: str, chunk_size: int | None,
               leave_one_out: tuple[torch.Tensor, torch.Tensor] | None, nmi: bool,
               nmi_seed: int) -> dict[str, float | int]:
    """Per-query first-match rank, R-precision and AP@R from each block's true-match ranks, then the means."""
    ks = _check_ks(ks)
    check_metric(metric)
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise EvaluationError(f"nothing to evaluate: {q.shape[0]} query and {g.shape[0]} gallery images.")
    g_cams = torch.zeros(g.shape[0], dtype=torch.int64)  # retrieval sets have no cameras
    protocol = dict(cross_camera=False, q_image_ids=None, g_image_ids=None)
    first, r_prec, ap_r = [], [], []
    for start, block in iter_distance_blocks(q, g, metric, chunk_size):
        rows = slice(start, start + block.shape[0])
        if leave_one_out is not None:  # the query's own image (same index) is removed from its gallery
            protocol.update(q_image_ids=leave_one_out[0][rows], g_image_ids=leave_one_out[1])
        if bool(torch.isnan(block.amax())):
            raise EvaluationError(f"the distances have NaN in query rows {rows.start}..{rows.stop - 1}; check the "
                                  f"features for NaN/inf.")
        matches = match_ranks(block, q_labels[rows], g_labels, torch.zeros(block.shape[0], dtype=torch.int64),
                              g_cams, chunk_size=chunk_size, **protocol)
        f, p, a = _query_scores([m.ranks for m in matches])
        first.append(f)
        r_prec.append(p)
        ap_r.append(a)
    first_rank = np.concatenate(first)
    valid = first_rank > 0
    if not valid.any():
        raise EvaluationError(f"none of the {q.shape[0]} queries has another image of its class in the gallery; "
                              f"check the labels.")
    out: dict[str, float | int] = {f"recall@{k}": float(np.mean(first_rank[valid] <= k)) for k in ks}
    out["map@r"] = float(np.concatenate(ap_r)[valid].mean())
    out["r_precision"] = float(np.concatenate(r_prec)[valid].mean())
    if nmi:
        feats = F.normalize(q, dim=1) if metric == "cosine" else q
        clusters = kmeans(feats, int(torch.unique(q_labels).numel()), seed=nmi_seed, chunk_size=chunk_size)
        out["nmi"] = normalized_mutual_info(q_labels.numpy(), clusters)
    out.update(num_query=int(q.shape[0]), num_gallery=int(g.shape[0]), num_valid_query=int(valid.sum()))
    return out


def _query_scores(ranks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query (its true matches' sorted 1-based ranks): first-match rank (0: no match), R-precision, AP@R."""
    count = np.array([len(r) for r in ranks], dtype=np.int64)
    flat = np.concatenate(ranks).astype(np.float64) if ranks else np.zeros(0)
    row = np.repeat(np.arange(len(ranks)), count)
    hit = np.arange(flat.size) - np.repeat(np.cumsum(count) - count, count) + 1  # j: the match's order, from 1
    within = flat <= count[row]  # r_j <= R
    r = np.maximum(count, 1).astype(np.float64)
    precision = np.bincount(row, weights=within, minlength=len(ranks)) / r
    ap_r = np.bincount(row, weights=np.where(within, hit / flat, 0.0), minlength=len(ranks)) / r
    first = np.zeros(len(ranks), dtype=np.int64)
    has = count > 0
    first[has] = flat[(np.cumsum(count) - count)[has]].astype(np.int64)
    return first, precision, ap_r


def kmeans(feats: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS, seed: int = 0,
           chunk_size: int | None = None) -> np.ndarray:
    """Cluster index of each row: Lloyd's k-means from k distinct random rows (a seeded generator), assignments by
    blocks of Euclidean distances (`iter_distance_blocks`); stops early when no assignment changes."""
    n = feats.shape[0]
    if not 1 <= k <= n:
        raise EvaluationError(f"k-means needs 1 <= clusters <= samples, got {k} clusters for {n} samples.")
    start = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].to(feats.device)
    centroids = feats[start].clone()
    assign = torch.full((n,), -1, dtype=torch.int64, device=feats.device)
    for _ in range(iterations):
        new = torch.cat([block.argmin(1) for _, block in iter_distance_blocks(feats, centroids, "euclidean",
                                                                              chunk_size)])
        if torch.equal(new, assign):
            break
        assign = new
        sums = torch.zeros_like(centroids).index_add_(0, assign, feats)
        counts = torch.bincount(assign, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None].to(feats.dtype)
    return assign.cpu().numpy()


def normalized_mutual_info(labels: np.ndarray, clusters: np.ndarray) -> float:
    """NMI = I(Y; C) / ((H(Y) + H(C)) / 2) in nats; 1.0 when both labelings are a single group (no entropy)."""
    _, y = np.unique(labels, return_inverse=True)
    _, c = np.unique(clusters, return_inverse=True)
    n = y.size
    joint = np.bincount(y * (c.max() + 1) + c).astype(np.float64) / n
    joint = joint[joint > 0]
    p_y = np.bincount(y) / n
    p_c = np.bincount(c) / n
    h_y, h_c = -np.sum(p_y * np.log(p_y)), -np.sum(p_c * np.log(p_c))
    if h_y == 0.0 and h_c == 0.0:
        return 1.0
    mutual = np.sum(joint * np.log(joint)) + h_y + h_c  # I = H(Y) + H(C) - H(Y, C)
    return float(max(mutual, 0.0) / ((h_y + h_c) / 2))
