"""Evaluation: distances, CMC / mAP / mINP (exact, sort-free), verification (ROC, AUC, EER, TAR at FAR; exact),
alpha query expansion and k-reciprocal re-ranking, on any torch device; every metric takes the split's
:class:`Protocol` (which query-gallery pairs are scored). Metric learning benchmarks: :func:`evaluate_retrieval`
(Recall@K, MAP@R, R-precision, NMI)."""
from reid.evaluation.chance import ChanceLevel, chance_level
from reid.evaluation.distance import EvaluationError, compute_distance, iter_distance_blocks
from reid.evaluation.histogram import DistanceHistogram, PairHistogram, distance_histogram
from reid.evaluation.lists import MatchRanks, TopK, match_ranks, topk_valid
from reid.evaluation.protocol import REMOVAL_RULES, Protocol, RemovalRule, register_removal_rule
from reid.evaluation.query_expansion import alpha_query_expansion, expand_queries
from reid.evaluation.rank import evaluate, evaluate_rank, observed, rank_blocks, reranker
from reid.evaluation.reranking import Reranker, re_ranking
from reid.evaluation.results import RankResult
from reid.evaluation.retrieval import RetrievalCounter, evaluate_retrieval
from reid.evaluation.verification import VerificationCounter, VerificationResult, evaluate_verification, verify

__all__ = [
    "ChanceLevel",
    "DistanceHistogram",
    "EvaluationError",
    "MatchRanks",
    "PairHistogram",
    "Protocol",
    "REMOVAL_RULES",
    "RankResult",
    "RemovalRule",
    "Reranker",
    "RetrievalCounter",
    "TopK",
    "VerificationCounter",
    "VerificationResult",
    "alpha_query_expansion",
    "chance_level",
    "compute_distance",
    "distance_histogram",
    "evaluate",
    "evaluate_rank",
    "evaluate_retrieval",
    "evaluate_verification",
    "expand_queries",
    "iter_distance_blocks",
    "match_ranks",
    "observed",
    "rank_blocks",
    "re_ranking",
    "register_removal_rule",
    "reranker",
    "topk_valid",
    "verify",
]
