"""Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss"): mining = the
hardest positive and hardest negative of each anchor (``BatchHardMiner``), weighting = a hinge
[d_ap - d_an + margin]_+ or the soft margin log(1 + exp(d_ap - d_an)) on Euclidean distances.

``MODEL.LOSSES.TRIPLET.WEIGHTING softmax`` is AGW's weighted regularisation triplet (Ye et al., TPAMI 2021) as
fast-reid computes it (its ``weighted_example_mining``, used when TRI.HARD_MINING is False): d_ap and d_an are
averages of all positive / negative distances with softmax weights of d / -d. fast-reid's details are kept, as they
change the trained model: the anchor itself counts as a positive (at distance ~0), each softmax subtracts the row
maximum of the masked matrix (whose masked-out entries count as 0, so for the negatives no shift at all) and adds
1e-6 to its normaliser, which for raw features far apart (exp(-d_an) below ~1e-6) shrinks d_an.

``normalize=False`` (default, the re-ID convention of the bag of tricks, Luo et al. 2019) uses the raw
features; ``normalize=True`` uses unit vectors, whose distance d = sqrt(2 - 2 s) is a function of the cosine
matrix, so only that variant goes through ``forward_sim`` and ``reid.analysis.pair_weights``.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import flag, non_negative
from ...registry import TRIPLET_WEIGHTING_REGISTRY
from ._config import cfg_get
from .frame import (PairLoss, check_batch, euclidean_distance, full_precision, masked_sum, pair_masks,
                    sphere_distance)
from .mining import BatchHardMiner
from .registry import LOSS_REGISTRY

TRIPLET_WEIGHTING_REGISTRY.register("hardest", True)  # batch-hard mining (Hermans et al. 2017)
TRIPLET_WEIGHTING_REGISTRY.register("softmax", False)  # AGW's weighted regularisation (Ye et al. 2021), no mining
SOFTMAX_EPS = 1e-6  # added to the softmax normalisers, as fast-reid's softmax_weights does


def _softmax_weights(x: Tensor, mask: Tensor) -> Tensor:
    """fast-reid's masked softmax of ``x`` along rows: shifted by the row maximum of x * mask, normaliser + 1e-6."""
    shifted = x - (x * mask).amax(dim=1, keepdim=True)
    e = torch.exp(shifted) * mask
    return e / (e.sum(dim=1, keepdim=True) + SOFTMAX_EPS)


def softmax_weighted_distances(dist: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tuple[Tensor, Tensor]:
    """(d_ap, d_an) of AGW's weighted regularisation: softmax(d)-weighted positives (the anchor included),
    softmax(-d)-weighted negatives."""
    same = (pos_mask | torch.eye(len(dist), dtype=torch.bool, device=dist.device)).to(dist.dtype)
    different = neg_mask.to(dist.dtype)
    d_pos, d_neg = dist * same, dist * different
    return (d_pos * _softmax_weights(d_pos, same)).sum(dim=1), (d_neg * _softmax_weights(-d_neg, different)).sum(dim=1)


@LOSS_REGISTRY.register("TripletLoss")
class TripletLoss(PairLoss):
    """Averaged over the anchors that have at least one positive and one negative (Hermans et al.), including
    those whose hinge is already 0 (PML's default reducer averages over the non-zero ones only)."""

    cfg_key = "TRIPLET"
    average = "valid"

    # margin 0.3 on raw features: bag of tricks (Luo et al. 2019) / fast-reid; Hermans et al. 2017 prefer the
    # soft margin (``soft_margin=True``, margin unused).
    def __init__(self, margin: float = 0.3, soft_margin: bool = False, normalize: bool = False,
                 weighting: str = "hardest") -> None:
        hardest = TRIPLET_WEIGHTING_REGISTRY.get(weighting, "MODEL.LOSSES.TRIPLET.WEIGHTING")
        super().__init__(BatchHardMiner() if hardest else None)
        if not margin >= 0:
            raise ValueError(f"triplet margin must be >= 0, got {margin}")
        self.margin, self.soft_margin, self.normalize = float(margin), bool(soft_margin), bool(normalize)
        self.weighting = weighting
        self.uses_cosine = self.normalize

    @classmethod
    def from_config(cls, cfg) -> "TripletLoss":
        p = "MODEL.LOSSES.TRIPLET."
        return cls(margin=non_negative(cfg, p + "MARGIN"), soft_margin=flag(cfg, p + "SOFT_MARGIN"),
                   normalize=flag(cfg, p + "NORM_FEAT"), weighting=cfg_get(cfg, p + "WEIGHTING"))

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

    def _weighting(self, dist: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        """Per-anchor loss from the (mined) masks: the hardest pair's distances, or AGW's softmax averages."""
        if self.miner is not None:
            gap = masked_sum(dist, pos_mask) - masked_sum(dist, neg_mask)
        else:
            d_ap, d_an = softmax_weighted_distances(dist, pos_mask, neg_mask)
            gap = d_ap - d_an
        return F.softplus(gap) if self.soft_margin else torch.relu(gap + self.margin)

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, soft_margin={self.soft_margin}, normalize={self.normalize}, "
                f"weighting={self.weighting}")
