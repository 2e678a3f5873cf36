"""Ranking metrics from the ranks of the true matches: per-query AP / INP / first match, CMC, mAP, mINP, and the
scores (``SCORE_REGISTRY``) that metrics.json and TEST.BEST_METRIC name."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from reid.evaluation.distance import EvaluationError
from reid.evaluation.protocol import Protocol
from reid.registry import SCORE_REGISTRY


@dataclass
class RankResult:
    """Ranking metrics as fractions; per query: `ap` and `inp` (NaN for the queries that were skipped) and
    `first_match`, the 1-based rank of the first true match (0 for skipped queries)."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_query: int
    num_gallery: int
    num_skipped: int
    ap: np.ndarray
    inp: np.ndarray
    first_match: np.ndarray

    @classmethod
    def from_queries(cls, ap: np.ndarray, inp: np.ndarray, first: np.ndarray, max_rank: int,
                     protocol: Protocol) -> RankResult:
        """CMC (length ``max_rank``), mAP and mINP over the valid queries (AP not NaN) of ``protocol``'s split."""
        valid = ~np.isnan(ap)
        num_valid, num_query = int(valid.sum()), protocol.num_query
        if num_valid == 0:
            raise EvaluationError(
                f"none of the {num_query} queries has a true match in the gallery ({protocol.rule.description}); "
                "check that query and gallery come from the same dataset split and that pids/camids are parsed."
            )
        hist = np.bincount(np.minimum(first[valid], max_rank + 1).astype(np.int64), minlength=max_rank + 2)
        cmc = np.cumsum(hist[1 : max_rank + 1]) / num_valid
        return cls(cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), num_valid=num_valid,
                   num_query=num_query, num_gallery=protocol.num_gallery, num_skipped=num_query - num_valid,
                   ap=ap, inp=inp, first_match=first.astype(np.int64))

    def as_dict(self) -> dict[str, float | int]:
        """Plain Python numbers for metrics.json: every registered score (ranks beyond `len(cmc)` are left out)
        and the query / gallery counts."""
        out: dict[str, float | int] = {
            name: value for name, score in RANK_SCORES.items() if (value := score(self)) is not None
        }
        out.update(
            num_query=int(self.num_query),
            num_gallery=int(self.num_gallery),
            num_valid_query=int(self.num_valid),
        )
        return out


def _cmc_at(k: int):
    """The score rank-k: CMC at k, or None when the curve is shorter (TEST.MAX_RANK < k)."""
    return lambda result: float(result.cmc[k - 1]) if k <= len(result.cmc) else None


# Scores of a RankResult, in metrics.json's order; TEST.BEST_METRIC names one (the checkpoint kept as best).
RANK_SCORES = {
    "rank1": _cmc_at(1),
    "rank5": _cmc_at(5),
    "rank10": _cmc_at(10),
    "mAP": lambda result: float(result.mAP),
    "mINP": lambda result: float(result.mINP),
}
# The retrieval metrics of a metric learning test set (``reid.evaluation.retrieval``), which its metrics.json entry
# holds beside the RankResult's: Recall@K for each K of TEST.RECALL_KS (registered here for the Ks of Oh Song et
# al. 2016's and the MS / Circle loss papers' tables, so that TEST.BEST_METRIC may name them), MAP@R, R-precision
# and NMI (TEST.NMI).
RECALL_SCORE_KS = (1, 2, 4, 8, 10, 16, 20, 30, 32, 40, 50, 100, 1000)
RETRIEVAL_SCORES = {**{f"recall@{k}": f"Recall@{k}" for k in RECALL_SCORE_KS}, "map@r": "MAP@R",
                    "r_precision": "R-precision", "nmi": "NMI"}
RECALL_KEY = re.compile(r"recall@[1-9][0-9]*")
for _name, _score in {**RANK_SCORES, **RETRIEVAL_SCORES}.items():
    SCORE_REGISTRY.register(_name, _score)


def score_names(metrics: dict) -> list[str]:
    """The scores a metrics.json entry holds, in its order: registered ones and ``recall@K`` for any K."""
    return [key for key in metrics if key in SCORE_REGISTRY or RECALL_KEY.fullmatch(key)]


def query_metrics(n: torch.Tensor, ranks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query from its number of true matches ``n`` and their sorted ranks (``BlockRanks``): AP = mean over
    true matches of (matches so far / rank), INP = matches / rank of the hardest, both float64 (NaN without a
    match), and the first match's rank (0 without one)."""
    nf = n.to(torch.float64)
    nan = torch.full_like(nf, float("nan"))
    if ranks.shape[1] == 0:
        return nan, nan, torch.zeros_like(n)
    r = ranks.to(torch.float64)
    hits = torch.arange(1, r.shape[1] + 1, device=r.device, dtype=torch.float64)
    in_row = hits <= nf[:, None]
    ap = torch.where(in_row, hits / r, 0.0).sum(1) / nf
    inp = nf / r.gather(1, (n - 1).clamp(min=0)[:, None]).squeeze(1)
    has = n > 0
    return torch.where(has, ap, nan), torch.where(has, inp, nan), torch.where(has, ranks[:, 0], 0)
