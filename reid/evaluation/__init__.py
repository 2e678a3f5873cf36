"""Evaluation: distances, CMC / mAP / mINP (exact, sort-free) and k-reciprocal re-ranking, on any torch device."""
from reid.evaluation.distance import EvaluationError, compute_distance, iter_distance_blocks
from reid.evaluation.rank import (ChanceLevel, MatchRanks, RankResult, TopK, chance_level, evaluate, evaluate_rank,
                                  match_ranks, reranked_distances, topk_valid)
from reid.evaluation.reranking import re_ranking

__all__ = [
    "ChanceLevel",
    "EvaluationError",
    "MatchRanks",
    "RankResult",
    "TopK",
    "chance_level",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "iter_distance_blocks",
    "match_ranks",
    "re_ranking",
    "reranked_distances",
    "topk_valid",
]
