"""CMC, mAP and mINP without sorting the gallery, exact and memory-bounded, on any torch device.

One pass over blocks of distance rows (given, or computed from features block by block): each block is ranked by
the sort-free kernel (``ranking.rank_block``) under the split's :class:`~reid.evaluation.protocol.Protocol`, and
observers (``observe``: verification counts, distance histograms) see the same blocks, so no metric needs a
second pass over the distances.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from reid.evaluation.distance import (EvaluationError, as_distances, as_distmat, as_features, check_finite,
                                      check_metric, iter_distance_blocks, row_blocks)
from reid.evaluation.protocol import IdsLike, Protocol, resolve_protocol
from reid.evaluation.ranking import rank_block
from reid.evaluation.reranking import Reranker
from reid.evaluation.results import RankResult, query_metrics

# Called with every (first_query_row, block) of distances that `evaluate` ranks: other metrics share its pass.
BlockObserver = Callable[[int, torch.Tensor], None]
Blocks = Iterator[tuple[int, torch.Tensor]]


def rank_blocks(blocks: Blocks, protocol: Protocol, max_rank: int = 50, finite: bool = False) -> RankResult:
    """Rank every ``(first_query_row, block)`` of distance rows under ``protocol`` (on the blocks' device);
    ``finite``: the blocks are known to hold no NaN (distances of finite features), so none is looked for."""
    _check_max_rank(max_rank)
    ap_parts, inp_parts, first_parts = [], [], []
    for start, block in blocks:
        block = as_distances(block)
        if not finite and bool(torch.isnan(block.amax())):  # amax propagates NaN: one read-only pass
            raise EvaluationError(f"the distance matrix has NaN in query rows {start}..{start + block.shape[0] - 1}; "
                                  "check the features for NaN/inf.")
        n, ranks, _ = rank_block(block.contiguous(), slice(start, start + block.shape[0]), protocol)
        ap, inp, first = query_metrics(n, ranks)
        ap_parts.append(ap)
        inp_parts.append(inp)
        first_parts.append(first)
    return RankResult.from_queries(torch.cat(ap_parts).cpu().numpy(), torch.cat(inp_parts).cpu().numpy(),
                                   torch.cat(first_parts).cpu().numpy(), max_rank, protocol)


def _check_max_rank(max_rank: int) -> None:
    if max_rank < 1:
        raise EvaluationError(f"max_rank must be at least 1, got {max_rank}.")


def evaluate_rank(
    distmat: torch.Tensor | np.ndarray,
    q_pids: IdsLike | None = None,
    g_pids: IdsLike | None = None,
    q_camids: IdsLike | None = None,
    g_camids: IdsLike | None = None,
    max_rank: int = 50,
    chunk_size: int | None = None,
    *,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
    protocol: Protocol | None = None,
) -> RankResult:
    """CMC (length `max_rank`), mAP and mINP of a (num_query, num_gallery) distance matrix, on its device.

    The split: `protocol`, or the id arrays with the rule keywords. `cross_camera=False` replaces the
    same-camera removal with same-image removal: a gallery item with the query's pid and its image id
    (`q_image_ids`, `g_image_ids`: equal ids = the same file) is removed; without image ids nothing but junk is.
    `chunk_size` is the number of query rows per block (default: a device-dependent element budget).
    """
    _check_max_rank(max_rank)
    distmat = as_distmat(distmat)
    rule = dict(cross_camera=cross_camera, q_image_ids=q_image_ids, g_image_ids=g_image_ids)
    split = resolve_protocol((q_pids, g_pids, q_camids, g_camids, protocol), rule, distmat.device, distmat.shape)
    return rank_blocks(row_blocks(distmat, chunk_size), split, max_rank)


def evaluate(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    q_pids: IdsLike | None = None,
    g_pids: IdsLike | None = None,
    q_camids: IdsLike | None = None,
    g_camids: IdsLike | None = None,
    metric: str = "cosine",
    rerank: bool = False,
    max_rank: int = 50,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    cross_camera: bool = True,
    q_image_ids: IdsLike | None = None,
    g_image_ids: IdsLike | None = None,
    observe: BlockObserver | Sequence[BlockObserver] | None = None,
    protocol: Protocol | None = None,
) -> RankResult:
    """Evaluate from features on their device; without re-ranking, distances are consumed block by block.

    With `rerank`, k-reciprocal re-ranking (`re_ranking`) is applied, to L2-normalised features when
    `metric="cosine"` and to the raw features when `metric="euclidean"`. The split is given as in
    `evaluate_rank`. `observe(first_row, block)` (one observer or several) sees every block of distances that is
    ranked (e.g. `VerificationCounter.add`, `PairHistogram.add`: their metrics from the same pass); a block is
    valid during the call only (the next one is written into the same memory): copy what you keep. Features with
    NaN or infinite values are an EvaluationError.
    """
    _check_max_rank(max_rank)
    q_feats, g_feats = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    rule = dict(cross_camera=cross_camera, q_image_ids=q_image_ids, g_image_ids=g_image_ids)
    split = resolve_protocol((q_pids, g_pids, q_camids, g_camids, protocol), rule, q_feats.device,
                             (q_feats.shape[0], g_feats.shape[0]))
    if not rerank:
        check_finite(q_feats, "q_feats")
        check_finite(g_feats, "g_feats")  # then no distance is NaN: the blocks need no check
        blocks = iter_distance_blocks(q_feats, g_feats, metric, chunk_size, reuse=True)
    else:
        blocks = reranker(q_feats, g_feats, metric, k1=k1, k2=k2, lambda_value=lambda_value,
                          chunk_size=chunk_size).blocks()
    return rank_blocks(observed(blocks, observe), split, max_rank, finite=not rerank)


def observed(blocks: Blocks, observe: BlockObserver | Sequence[BlockObserver] | None) -> Blocks:
    """The blocks, each shown to the observer(s) first (``observe(first_row, block)``)."""
    observers = [observe] if callable(observe) else list(observe or ())
    for start, block in blocks:
        for fn in observers:
            fn(start, block)
        yield start, block


def reranker(
    q_feats: torch.Tensor | np.ndarray,
    g_feats: torch.Tensor | np.ndarray,
    metric: str = "cosine",
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
    hold: bool | None = None,
) -> Reranker:
    """The :class:`Reranker` that `evaluate(rerank=True)` ranks: of L2-normalised features for
    `metric="cosine"`, of the raw features for `"euclidean"` (``hold``: see :class:`Reranker`)."""
    check_metric(metric)
    return Reranker(q_feats, g_feats, k1, k2, lambda_value, chunk_size, normalize=metric == "cosine", hold=hold)
