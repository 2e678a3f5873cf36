"""Evaluation: distances, CMC / mAP / mINP (exact, sort-free) and k-reciprocal re-ranking, on any torch device."""
from reid.evaluation.distance import EvaluationError, compute_distance, iter_distance_blocks
from reid.evaluation.rank import RankResult, TopK, evaluate, evaluate_rank, topk_valid
from reid.evaluation.reranking import re_ranking

__all__ = [
    "EvaluationError",
    "RankResult",
    "TopK",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "iter_distance_blocks",
    "re_ranking",
    "topk_valid",
]
