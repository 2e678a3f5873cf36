"""Alpha-weighted query expansion (alpha QE, Radenovic et al. 2018, "Fine-tuning CNN image retrieval with no human
annotation"), block by block like the distances.

Each vector is replaced by the mean of its ``qe_k`` nearest neighbours by cosine similarity, itself included
(it is its own nearest, similarity 1), each weighted by similarity ** ``alpha``; this is repeated ``qe_time``
times, the neighbours found anew each time. :func:`alpha_query_expansion` is fast-reid's ``aqe``
(``TEST.AQE``): query and gallery together are expanded, neighbours taken among both; the weighted vectors are
the un-normalised features, the similarities those of the L2-normalised ones. :func:`expand_queries` expands the
queries only, with neighbours from a gallery (optionally found by a nearest-neighbour index), which is what a
search service can afford on a gallery of millions.

Memory: one block of similarity rows (the distance blocks' element budget) and the ``qe_k`` neighbours of its
rows at a time, besides the features and their expanded copy.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .distance import DISTANCE_ELEMS, EvaluationError, as_features, block_rows, check_pair, exact_mm

# (normalised query rows (B, D), k) -> (similarities (B, k), gallery indices (B, k)), nearest first.
NeighbourSearch = Callable[[torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


def _check(qe_time: int, qe_k: int, alpha: float) -> None:
    if qe_time < 1 or qe_k < 1:
        raise EvaluationError(f"query expansion needs qe_time >= 1 and qe_k >= 1, got {qe_time} and {qe_k}.")
    if not alpha >= 0:
        raise EvaluationError(f"query expansion needs alpha >= 0, got {alpha}.")


def exact_neighbours(database: torch.Tensor, chunk_size: int | None = None) -> NeighbourSearch:
    """Exact nearest neighbours by cosine similarity among the L2-normalised ``database`` rows."""
    def search(rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        step = block_rows(database.shape[0], rows.device, chunk_size, DISTANCE_ELEMS)
        sims, idx = [], []
        for start in range(0, rows.shape[0], step):
            best = torch.topk(exact_mm(rows[start:start + step], database.T), min(k, database.shape[0]), dim=1)
            sims.append(best.values)
            idx.append(best.indices)
        return torch.cat(sims), torch.cat(idx)

    return search


def _weighted_mean(vectors: torch.Tensor, sims: torch.Tensor, idx: torch.Tensor, alpha: float,
                   chunk_size: int | None) -> torch.Tensor:
    """Per row: mean over its neighbours ``idx`` of vectors[idx] * sims ** alpha, a block of rows at a time."""
    out = torch.empty(idx.shape[0], vectors.shape[1], dtype=vectors.dtype, device=vectors.device)
    weights = sims.pow(alpha).to(vectors.dtype)
    step = block_rows(idx.shape[1] * vectors.shape[1], vectors.device, chunk_size)
    for start in range(0, idx.shape[0], step):
        rows = slice(start, start + step)
        out[rows] = (vectors[idx[rows]] * weights[rows, :, None]).mean(1)
    return out


def alpha_query_expansion(q_feats: torch.Tensor, g_feats: torch.Tensor, qe_time: int = 1, qe_k: int = 5,
                          alpha: float = 3.0, chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """fast-reid's ``aqe`` (TEST.AQE): query and gallery features expanded together, neighbours among both.

    Returns the expanded (un-normalised) query and gallery features. Costs ``qe_time`` similarity passes over
    (query + gallery)^2 pairs.
    """
    _check(qe_time, qe_k, alpha)
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    check_pair(q_feats, g_feats)
    feats = torch.cat([q_feats, g_feats])
    for _ in range(qe_time):
        normed = F.normalize(feats, dim=1)
        sims, idx = exact_neighbours(normed, chunk_size)(normed, qe_k)
        feats = _weighted_mean(feats, sims, idx, alpha, chunk_size)
    return feats[:q_feats.shape[0]], feats[q_feats.shape[0]:]


def expand_queries(q_feats: torch.Tensor, g_feats: torch.Tensor, qe_time: int = 1, qe_k: int = 5,
                   alpha: float = 3.0, neighbours: NeighbourSearch | None = None,
                   chunk_size: int | None = None) -> torch.Tensor:
    """Alpha QE of the queries only: each query with its ``qe_k - 1`` nearest gallery items (the query itself is
    the first neighbour, similarity 1), the gallery unchanged.

    ``neighbours`` finds gallery neighbours of normalised query rows (default: exact, on ``g_feats``'s device;
    a FAISS index's search in ``reid.index``). Returns the expanded (un-normalised) queries.
    """
    _check(qe_time, qe_k, alpha)
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    check_pair(q_feats, g_feats)
    search = neighbours or exact_neighbours(F.normalize(g_feats, dim=1), chunk_size)
    for _ in range(qe_time):
        normed = F.normalize(q_feats, dim=1)
        sims, idx = search(normed, qe_k - 1) if qe_k > 1 else (normed.new_zeros(len(normed), 0),
                                                                 torch.zeros(len(normed), 0, dtype=torch.long))
        idx = idx.to(g_feats.device)
        own = torch.ones(len(normed), 1, dtype=sims.dtype, device=sims.device)
        weights = torch.cat([own, sims.to(own.dtype)], 1).pow(alpha).to(q_feats.dtype)
        total = q_feats * weights[:, :1]
        for j in range(idx.shape[1]):  # k is small: one gather of gallery rows per neighbour rank
            valid = (idx[:, j] >= 0)[:, None]  # an index may return -1 where it has fewer neighbours
            total += torch.where(valid, g_feats[idx[:, j].clamp(min=0)] * weights[:, j + 1:j + 2], 0.0)
        q_feats = total / weights.shape[1]
    return q_feats
