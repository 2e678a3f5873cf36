"""Single-shot CMC: the CMC when the gallery holds one random image per identity, as CUHK03's classic protocol
reports it (Li et al., CVPR 2014), computed exactly as an expectation instead of by drawing galleries.

torchreid's ``use_metric_cuhk03`` draws one image per gallery identity ten times per query with NumPy's global
random state and averages the ten CMCs; this module gives the value those draws estimate. For a query with true
matches T (after the protocol's removals) and another identity j of n_j valid gallery items, of which c_j(t) come
before true match t in the ranking (distance, then gallery index, as every ranking of reid), identity j's drawn
item comes before t with probability p_j(t) = c_j(t) / n_j, independently of the other identities. The rank of t in
a drawn gallery is 1 + K(t), K(t) a sum of independent Bernoulli(p_j(t)) (a Poisson binomial), and t is the drawn
true match with probability 1 / |T|, so

    P(rank <= k) = 1/|T| sum_{t in T} P(K(t) <= k - 1),

computed by the Poisson-binomial recursion truncated at k = max_rank, in float64. The CMC is its mean over the
valid queries; mAP and mINP are not changed (torchreid's CUHK03 metric keeps the standard AP too). Every gallery
pid is one identity, the distractors' pid 0 included (as torchreid groups them).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from .distance import EvaluationError, as_distmat, row_blocks
from .protocol import IdsLike, Protocol, resolve_protocol
from .results import RankResult

_ELEMS = 1 << 22  # comparisons (query x true match x gallery item) per sub-block


class SingleShotCMC:
    """Observer of the ranking pass (``evaluate(observe=...)``): the expected single-shot CMC from the same
    distance blocks. ``split``: a :class:`Protocol`, or the four id arrays with ``evaluate_rank``'s rule keywords."""

    def __init__(self, *split: Protocol | IdsLike, max_rank: int = 50, **rule: Any) -> None:
        self.protocol = resolve_protocol(split, rule)
        self.max_rank = max_rank
        pids = self.protocol.g_pids
        valid = ~self.protocol.junk
        _, group, counts = torch.unique(pids[valid], return_inverse=True, return_counts=True)
        self.group = torch.zeros_like(pids).masked_scatter_(valid, group)  # identity index of each gallery item
        self.sizes = counts.to(torch.float64)
        self.width = max(1, int(counts.max()))  # most true matches a query can have
        self.total = torch.zeros(max_rank, dtype=torch.float64)
        self.num_valid = 0

    def add(self, start: int, block: torch.Tensor) -> None:
        """Distances of queries ``start ..`` to the gallery (B, G); any device."""
        protocol = self.protocol = self.protocol.to(block.device)
        step = max(1, _ELEMS // (self.width * max(1, block.shape[1])))
        for lo in range(0, block.shape[0], step):
            self._add(protocol, start + lo, block[lo:lo + step].double())

    def add_matrix(self, distmat: torch.Tensor, chunk_size: int | None = None) -> "SingleShotCMC":
        """Every row block of a whole (num_query, num_gallery) distance matrix (e.g. re-ranked distances)."""
        for start, block in row_blocks(as_distmat(distmat), chunk_size):
            self.add(start, block)
        return self

    def _add(self, protocol: Protocol, start: int, dist: torch.Tensor) -> None:
        rows = slice(start, start + dist.shape[0])
        cand, match, _ = protocol.candidates(rows)
        valid = match.any(1)
        if not bool(valid.any()):
            return
        device = dist.device
        group, sizes = self.group.to(device), self.sizes.to(device)
        d_true = dist.gather(1, cand)  # (B, W)
        index = torch.arange(dist.shape[1], device=device)
        before = (dist[:, None, :] < d_true[:, :, None]) | (
            (dist[:, None, :] == d_true[:, :, None]) & (index < cand[:, :, None]))  # (B, W, G)
        other = ~protocol.junk & (protocol.g_pids != protocol.q_pids[rows, None])  # (B, G): other identities
        counts = torch.zeros(*before.shape[:2], sizes.numel(), dtype=torch.float64, device=device)
        counts.scatter_add_(2, group.expand_as(before), (before & other[:, None, :]).double())
        p = (counts / sizes)[match]  # (M, J): identity j drawn before true match t, per (query, t) pair
        below = _poisson_binomial_cdf(p, self.max_rank)  # (M, max_rank): P(rank <= k)
        owner = torch.arange(dist.shape[0], device=device)[:, None].expand_as(match)[match]
        per_query = torch.zeros(dist.shape[0], self.max_rank, dtype=torch.float64, device=device)
        per_query.index_add_(0, owner, below)
        per_query = per_query[valid] / match.sum(1)[valid, None]
        self.total += per_query.sum(0).cpu()
        self.num_valid += int(valid.sum())

    def cmc(self) -> np.ndarray:
        """The expected single-shot CMC (ranks 1..max_rank) over the valid queries."""
        if self.num_valid == 0:
            raise EvaluationError("no query has a true match in the gallery; the single-shot CMC is undefined.")
        return (self.total / self.num_valid).numpy()

    def apply(self, result: RankResult) -> RankResult:
        """``result`` with its CMC replaced by the single-shot one (mAP, mINP and per-query values unchanged)."""
        if self.num_valid != result.num_valid:
            raise EvaluationError(f"the single-shot CMC saw {self.num_valid} valid queries, the ranking "
                                  f"{result.num_valid}: they were not given the same distances.")
        return replace(result, cmc=self.cmc()[:len(result.cmc)])


def _poisson_binomial_cdf(p: torch.Tensor, max_rank: int) -> torch.Tensor:
    """(M, J) success probabilities -> (M, max_rank) P(number of successes <= k), k = 0..max_rank - 1 (mass above
    max_rank - 1 is never needed, so the distribution is kept only up to there)."""
    dist = torch.zeros(p.shape[0], max_rank, dtype=torch.float64, device=p.device)
    dist[:, 0] = 1.0
    for j in range(p.shape[1]):
        pj = p[:, j:j + 1]
        shifted = torch.cat([torch.zeros_like(pj), dist[:, :-1]], dim=1)
        dist = dist * (1 - pj) + shifted * pj
    return torch.cumsum(dist, dim=1)


def single_shot_cmc(distmat: torch.Tensor | np.ndarray, *split: Protocol | IdsLike, max_rank: int = 50,
                    chunk_size: int | None = None, **rule: Any) -> np.ndarray:
    """The expected single-shot CMC of a (num_query, num_gallery) distance matrix; ``split`` as
    :class:`SingleShotCMC`'s."""
    distmat = as_distmat(distmat)
    protocol = resolve_protocol(split, rule, distmat.device, distmat.shape)
    return SingleShotCMC(protocol, max_rank=max_rank).add_matrix(distmat, chunk_size).cmc()
