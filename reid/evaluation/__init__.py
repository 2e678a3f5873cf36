"""Evaluation: distances, CMC / mAP / mINP (exact, sort-free), verification (ROC, AUC, EER, TAR at FAR; exact),
alpha query expansion and k-reciprocal re-ranking, on any torch device."""
from reid.evaluation.distance import EvaluationError, compute_distance, iter_distance_blocks
from reid.evaluation.rank import (ChanceLevel, MatchRanks, RankResult, TopK, chance_level, evaluate, evaluate_rank,
                                  match_ranks, reranked_distances, topk_valid)
from reid.evaluation.query_expansion import alpha_query_expansion, expand_queries
from reid.evaluation.reranking import re_ranking
from reid.evaluation.verification import VerificationCounter, VerificationResult, evaluate_verification, verify

__all__ = [
    "ChanceLevel",
    "EvaluationError",
    "MatchRanks",
    "RankResult",
    "TopK",
    "VerificationCounter",
    "VerificationResult",
    "alpha_query_expansion",
    "chance_level",
    "compute_distance",
    "evaluate",
    "evaluate_rank",
    "evaluate_verification",
    "expand_queries",
    "iter_distance_blocks",
    "match_ranks",
    "re_ranking",
    "reranked_distances",
    "topk_valid",
    "verify",
]
