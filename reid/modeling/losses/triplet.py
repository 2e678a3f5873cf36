"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss"): mining = the
hardest positive and hardest negative of each anchor (``BatchHardMiner``), weighting = a hinge
[d_ap - d_an + margin]_+ or the soft margin log(1 + exp(d_ap - d_an)) on Euclidean distances.

``normalize=False`` (default, the re-ID convention of the bag of tricks, Luo et al. 2019) uses the raw
features; ``normalize=True`` uses unit vectors, whose distance d = sqrt(2 - 2 s) is a function of the cosine
matrix, so only that variant goes through ``forward_sim`` and ``reid.analysis.pair_weights``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import flag, non_negative
from .frame import (PairLoss, check_batch, euclidean_distance, full_precision, masked_sum, pair_masks,
                    sphere_distance)
from .mining import BatchHardMiner
from .registry import LOSS_REGISTRY


@LOSS_REGISTRY.register("TripletLoss")
class TripletLoss(PairLoss):
    """Averaged over the anchors that have at least one positive and one negative (Hermans et al.), including
    those whose hinge is already 0 (PML's default reducer averages over the non-zero ones only)."""

    cfg_key = "TRIPLET"
    average = "valid"

    # margin 0.3 on raw features: bag of tricks (Luo et al. 2019) / fast-reid; Hermans et al. 2017 prefer the
    # soft margin (``soft_margin=True``, margin unused).
    def __init__(self, margin: float = 0.3, soft_margin: bool = False, normalize: bool = False) -> None:
        super().__init__(BatchHardMiner())
        if not margin >= 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.margin, self.soft_margin, self.normalize = float(margin), bool(soft_margin), bool(normalize)
        self.uses_cosine = self.normalize

    @classmethod
    def from_config(cls, cfg) -> "TripletLoss":
        p = "MODEL.LOSSES.TRIPLET."
        return cls(margin=non_negative(cfg, p + "MARGIN"), soft_margin=flag(cfg, p + "SOFT_MARGIN"),
                   normalize=flag(cfg, p + "NORM_FEAT"))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if self.normalize:
            return super().forward(embeddings, labels)
        check_batch(embeddings, labels)
        pos_mask, neg_mask = pair_masks(labels)
        dist = euclidean_distance(embeddings)
        with full_precision(dist):
            return self.reduce(dist, pos_mask, neg_mask, self._weighting, mining_sim=-dist.detach())

    def forward_sim(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        if not self.normalize:
            raise ValueError("TripletLoss(normalize=False) works on distances of raw features, not on the cosine "
                             "matrix; use normalize=True to evaluate it from S")
        return super().forward_sim(sim, pos_mask, neg_mask)

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        return self._weighting(sphere_distance(sim), pos_mask, neg_mask)

    def _weighting(self, dist: Tensor, hardest_pos: Tensor, hardest_neg: Tensor) -> Tensor:
        gap = masked_sum(dist, hardest_pos) - masked_sum(dist, hardest_neg)
        return F.softplus(gap) if self.soft_margin else torch.relu(gap + self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft_margin={self.soft_margin}, normalize={self.normalize}"
