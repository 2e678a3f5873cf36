"""Losses in one pair-weighting frame (see README.md): registries, builders and the public loss classes."""
from .binomial import BinomialDevianceLoss
from .build import Criterion, build_criterion, trains_classifier
from .circle import PairwiseCircleLoss, circle_logits
from .classifiers import (CircleClassifier, CosFaceClassifier, LinearBiasClassifier, LinearClassifier, build_classifier,
                          cosface_logits)
from .contrastive import ContrastiveLoss
from .cross_entropy import CrossEntropyLoss
from .frame import PairLoss, PairMiner, cosine_similarity, pair_masks
from .lifted import LiftedStructureLoss
from .mining import BatchHardMiner, MultiSimilarityMiner, build_miner
from .multi_similarity import MultiSimilarityLoss
from .registry import CLASSIFIER_REGISTRY, LOSS_REGISTRY, MINER_REGISTRY
from .triplet import TripletLoss

__all__ = [
    "LOSS_REGISTRY", "CLASSIFIER_REGISTRY", "MINER_REGISTRY", "build_criterion", "build_classifier", "build_miner",
    "trains_classifier", "Criterion", "PairLoss", "PairMiner", "cosine_similarity", "pair_masks", "circle_logits",
    "cosface_logits",
    "CrossEntropyLoss", "PairwiseCircleLoss", "MultiSimilarityLoss", "TripletLoss", "ContrastiveLoss",
    "LiftedStructureLoss", "BinomialDevianceLoss", "MultiSimilarityMiner", "BatchHardMiner",
    "LinearClassifier", "LinearBiasClassifier", "CircleClassifier", "CosFaceClassifier",
]
