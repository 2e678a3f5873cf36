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

A query without any true match is skipped (counted in `num_valid_query`). Equal distances rank by gallery index,
the order faiss (pytorch-metric-learning's default k-NN) gives them too.

How: distances come a block of query rows at a time (`iter_distance_blocks`; no query x gallery matrix is held).
A rank beyond every K and every R changes no metric, so each query only needs its `depth` = max(K, R) nearest
items: a `topk` of each row gives the distance of the (depth + 1)-th nearest, every item no farther is a
candidate (ties at that distance included, so the cut is exact), and only the candidates are sorted. The work
beyond the distance products does not depend on how good the embedding is.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reid.evaluation.distance import EvaluationError, as_features, check_metric, iter_distance_blocks

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
        return _retrieval(feats, labels, feats, labels, ks, metric, chunk_size, True, nmi, nmi_seed)
    g_feats = as_features(gallery_feats, "gallery_feats")
    g_labels = _as_labels(gallery_labels, "gallery_labels", g_feats.shape[0])
    return _retrieval(feats, labels, g_feats, g_labels, ks, metric, chunk_size, False, nmi, nmi_seed)


def _as_labels(labels: LabelsLike, name: str, length: int | None = None) -> torch.Tensor:
    """1-D int64 class ids >= 0 on the CPU (``length`` of them when given), else an EvaluationError naming them."""
    out = torch.as_tensor(labels if isinstance(labels, torch.Tensor) else np.asarray(labels))
    if out.dim() != 1 or out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
        raise EvaluationError(f"{name} must be a 1-D array of integer class ids, got shape {tuple(out.shape)} "
                              f"{out.dtype}.")
    if length is not None and out.numel() != length:
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
               ks: Sequence[int], metric: str, chunk_size: int | None, leave_one_out: bool, nmi: bool,
               nmi_seed: int) -> dict[str, float | int]:
    """The metrics of one pass of distance blocks (`RetrievalCounter`), and NMI of the query features."""
    check_metric(metric)
    if q.shape[0] == 0 or g.shape[0] == 0:
        raise EvaluationError(f"nothing to evaluate: {q.shape[0]} query and {g.shape[0]} gallery images.")
    counter = RetrievalCounter(q_labels, g_labels, ks, leave_one_out, device=g.device)
    for start, block in iter_distance_blocks(q, g, metric, chunk_size):  # q is g: leave-one-out
        counter.add(start, block)
    return counter.result(retrieval_nmi(q, q_labels, metric, nmi_seed, chunk_size) if nmi else None)


class RetrievalCounter:
    """Recall@K, MAP@R and R-precision from the distance blocks of a pass over the queries: a block observer of
    `reid.evaluation.rank.evaluate` (`add(first_row, block)`), so that an evaluation that also ranks by the re-ID
    protocol computes the distances once.

    Per query: R (its true matches in the gallery; leave-one-out: its own image is not one), then from each block
    the ranks of its true matches among its `depth` nearest items (`_block_scores`); `result` averages over the
    queries with R > 0. Blocks may come in any order; every query row must be added once.
    """

    def __init__(self, q_labels: LabelsLike, g_labels: LabelsLike, ks: Sequence[int] = (1, 2, 4, 8),
                 leave_one_out: bool = True, device: torch.device | str | None = None) -> None:
        self.ks = _check_ks(ks)
        self.q_labels = _as_labels(q_labels, "labels").to(device)
        self.g_labels = _as_labels(g_labels, "gallery_labels").to(device)
        if leave_one_out and not torch.equal(self.q_labels, self.g_labels):
            raise EvaluationError("leave-one-out needs the query and gallery to be the same images (same labels).")
        self.leave_one_out = leave_one_out
        if self.q_labels.numel() == 0 or self.g_labels.numel() == 0:
            raise EvaluationError(f"nothing to evaluate: {self.q_labels.numel()} query and {self.g_labels.numel()} "
                                  f"gallery images.")
        class_size = torch.bincount(self.g_labels, minlength=int(self.q_labels.max()) + 1)
        self.r = class_size[self.q_labels] - int(leave_one_out)  # true matches per query (its own image is not one)
        # Ranks beyond every K and every R change no metric: each query needs only its `depth` nearest items.
        self.depth = max(self.ks[-1], int(self.r.max()))
        self._parts: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, start: int, block: torch.Tensor) -> None:
        """Score the distances of query rows ``start .. start + len(block) - 1`` to the whole gallery."""
        if bool(torch.isnan(block.amax())):
            raise EvaluationError(f"the distances have NaN in query rows {start}..{start + block.shape[0] - 1}; "
                                  f"check the features for NaN/inf.")
        if block.shape[1] != self.g_labels.numel():
            raise EvaluationError(f"a distance block has {block.shape[1]} columns for {self.g_labels.numel()} "
                                  f"gallery labels.")
        rows = slice(start, start + block.shape[0])
        q_labels, r = self.q_labels[rows].to(block.device), self.r[rows].to(block.device)
        self._parts.append((start, *_block_scores(block, rows, q_labels, self.g_labels.to(block.device), r,
                                                  self.depth, self.leave_one_out)))

    def result(self, nmi: float | None = None) -> dict[str, float | int]:
        """``recall@K`` for each K, ``map@r``, ``r_precision`` (fractions; ``nmi`` when given), then
        ``num_query``, ``num_gallery`` and ``num_valid_query`` (queries with a true match)."""
        parts = sorted(self._parts, key=lambda part: part[0])
        num_query = self.q_labels.numel()
        if sum(part[1].numel() for part in parts) != num_query:
            raise EvaluationError(f"distance rows of {sum(p[1].numel() for p in parts)} queries were added, "
                                  f"{num_query} expected.")
        first_rank, r_prec, ap_r = (torch.cat([part[i] for part in parts]) for i in (1, 2, 3))
        valid = (self.r > 0).cpu()
        if not bool(valid.any()):
            raise EvaluationError(f"none of the {num_query} queries has another image of its class in the "
                                  f"gallery; check the labels.")
        out: dict[str, float | int] = {f"recall@{k}": float((first_rank[valid] <= k).double().mean())
                                       for k in self.ks}
        out["map@r"] = float(ap_r[valid].mean())
        out["r_precision"] = float(r_prec[valid].mean())
        if nmi is not None:
            out["nmi"] = nmi
        out.update(num_query=num_query, num_gallery=int(self.g_labels.numel()), num_valid_query=int(valid.sum()))
        return out


def retrieval_nmi(feats: torch.Tensor, labels: LabelsLike, metric: str = "cosine", seed: int = 0,
                  chunk_size: int | None = None) -> float:
    """NMI of the k-means clusters of ``feats`` (as many as classes; L2-normalised first for the cosine metric)
    and the class ``labels``."""
    feats = as_features(feats, "feats")
    labels = _as_labels(labels, "labels", feats.shape[0])
    feats = F.normalize(feats, dim=1) if metric == "cosine" else feats
    clusters = kmeans(feats, int(torch.unique(labels).numel()), seed=seed, chunk_size=chunk_size)
    return normalized_mutual_info(labels.numpy(), clusters)


def _block_scores(dist: torch.Tensor, rows: slice, q_labels: torch.Tensor, g_labels: torch.Tensor, r: torch.Tensor,
                  depth: int, leave_one_out: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """First-match rank (depth + 1 when beyond), R-precision and AP@R of a block of query rows (float64).

    Candidates (`_candidates`): every item no farther than the row's (depth + 1)-th smallest distance, so every item
    ranked within `depth` is among them. They are ordered by (distance, gallery index);
    the query's own image (leave-one-out) is then dropped, and a true match's rank is its position among the rest.
    """
    d, idx = _candidates(dist, depth)
    order = torch.argsort(d, dim=1, stable=True)  # indices ascending within a row: ties keep index order
    idx = idx.gather(1, order)
    valid = idx >= 0
    if leave_one_out:
        valid &= idx != torch.arange(rows.start, rows.stop, device=dist.device)[:, None]
    rank = torch.cumsum(valid, 1)  # 1-based rank of each valid candidate
    match = valid & (g_labels[idx.clamp(min=0)] == q_labels[:, None]) & (rank <= depth)
    first = torch.where(match.any(1), torch.where(match, rank, depth + 1).amin(1), depth + 1)
    hits = torch.cumsum(match, 1)  # j: the order of each true match
    r_float = r.to(torch.float64).clamp(min=1)  # R = 0: a skipped query
    within = match & (rank <= r[:, None])
    precision = within.sum(1) / r_float
    ap_r = torch.where(within, hits / rank.to(torch.float64), 0.0).sum(1) / r_float
    return first.cpu(), precision.cpu(), ap_r.cpu()


def _candidates(dist: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the distances and gallery indices (ascending) of every item no farther than its (depth + 1)-th
    nearest, padded with (inf, -1): the row's `topk` when no item beyond it lies at the same distance, else all
    items up to that distance (rows with a tie at the cut, rare with real features, exact with any)."""
    bsz, num_gallery = dist.shape
    if depth + 1 >= num_gallery:
        return dist, torch.arange(num_gallery, device=dist.device).expand(bsz, -1)
    values, indices = torch.topk(dist, depth + 2, dim=1, largest=False, sorted=True)
    idx, by_index = indices[:, : depth + 1].sort(dim=1)
    d = values[:, : depth + 1].gather(1, by_index)
    tied = (values[:, depth + 1] == values[:, depth]).nonzero().squeeze(1)
    if tied.numel() == 0:
        return d, idx
    row, col = (dist[tied] <= values[tied, depth, None]).nonzero(as_tuple=True)  # row-major: columns ascending
    count = torch.bincount(row, minlength=tied.numel())
    slot = torch.arange(row.numel(), device=dist.device) - (torch.cumsum(count, 0) - count)[row]
    width = int(count.max())
    d = F.pad(d, (0, width - d.shape[1]), value=float("inf"))
    idx = F.pad(idx, (0, width - idx.shape[1]), value=-1)
    d[tied], idx[tied] = float("inf"), -1
    d[tied[row], slot] = dist[tied[row], col]
    idx[tied[row], slot] = col
    return d, idx


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
