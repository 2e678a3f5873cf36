"""What a ranked-list picture shows of chosen queries, by the evaluator's own rules: the k nearest valid gallery
items, and every true match with its exact rank."""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from reid.evaluation.distance import as_distances, as_distmat, row_blocks
from reid.evaluation.protocol import IdsLike, Protocol, resolve_protocol
from reid.evaluation.ranking import rank_block


class TopK(NamedTuple):
    """Per query, the k nearest valid gallery items: indices (-1 where fewer exist) and distances (inf there)."""

    indices: np.ndarray
    distances: np.ndarray


class MatchRanks(NamedTuple):
    """One query's true matches in rank order: their gallery indices and 1-based ranks among the valid items."""

    gallery: np.ndarray
    ranks: np.ndarray


def match_ranks(distmat: torch.Tensor | np.ndarray, *split: Protocol | IdsLike, chunk_size: int | None = None,
                **rule: Any) -> list[MatchRanks]:
    """Per query row, its true matches in rank order with their exact 1-based ranks, as the evaluator counts them.

    For the rows of a few chosen queries (plain or re-ranked distances): the ranks and gallery indices behind
    a ranked-list picture, by the evaluator's own sort-free count. ``split``: the rows' :class:`Protocol`
    (``Protocol.subset``), or ``q_pids, g_pids, q_camids, g_camids`` with ``evaluate_rank``'s rule keywords.
    """
    distmat = as_distmat(distmat)
    protocol = resolve_protocol(split, rule, distmat.device, distmat.shape)
    out: list[MatchRanks] = []
    for start, block in row_blocks(distmat, chunk_size):
        n, ranks, idx = rank_block(as_distances(block).contiguous(), slice(start, start + block.shape[0]), protocol)
        for count, r, g in zip(n.tolist(), ranks.cpu().numpy(), idx.cpu().numpy()):
            out.append(MatchRanks(g[:count].astype(np.int64), r[:count].astype(np.int64)))
    return out


def topk_valid(distmat: torch.Tensor | np.ndarray, *split: Protocol | IdsLike, k: int = 10,
               chunk_size: int | None = None, **rule: Any) -> TopK:
    """The k nearest gallery items of each query after the protocol's removals, in (distance, index) order.

    For ranked-list pictures; a stable sort of each row, so meant for a handful of queries or small galleries.
    ``split`` as in :func:`match_ranks`.
    """
    distmat = as_distmat(distmat)
    protocol = resolve_protocol(split, rule, distmat.device, distmat.shape)
    idx_parts, dist_parts = [], []
    for start, block in row_blocks(distmat, chunk_size):
        removed = protocol.removed(slice(start, start + block.shape[0]))
        order = torch.argsort(as_distances(block), dim=1, stable=True)
        order = order.gather(1, torch.argsort(removed.gather(1, order).to(torch.uint8), dim=1, stable=True))
        order = order[:, :k]
        dist = block.gather(1, order)
        gone = removed.gather(1, order)
        idx_parts.append(order.masked_fill(gone, -1))
        dist_parts.append(dist.masked_fill(gone, float("inf")))
    return TopK(torch.cat(idx_parts).cpu().numpy(), torch.cat(dist_parts).cpu().numpy())
