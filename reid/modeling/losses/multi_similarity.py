"""Multi-Similarity loss (Wang et al., CVPR 2019; the GPW paper's RAW weighting + VTHM mining).

Mining (``MultiSimilarityMiner``, margin epsilon), then
L = 1/m sum_i [ 1/alpha log(1 + sum_{P_i'} exp(-alpha (s_ij - lambda)))
              + 1/beta log(1 + sum_{N_i'} exp(beta (s_ik - lambda))) ].
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from ._config import flag, non_negative
from .families import ScaledPairLoss
from .frame import masked_logsumexp
from .mining import MultiSimilarityMiner
from .registry import LOSS_REGISTRY


def ms_weighting(sim: Tensor, pos_mask: Tensor, neg_mask: Tensor, alpha: float, beta: float, base: float) -> Tensor:
    """Per-anchor soft-plus-of-log-sum-exp terms (GPW paper eq. 17): relative + absolute similarity weights."""
    pos = masked_logsumexp(-alpha * (sim - base), pos_mask, add_one=True) / alpha
    neg = masked_logsumexp(beta * (sim - base), neg_mask, add_one=True) / beta
    return pos + neg


@LOSS_REGISTRY.register("MultiSimilarityLoss")
class MultiSimilarityLoss(ScaledPairLoss):
    """MS loss, averaged over ALL anchors of the batch (the paper's 1/m): an anchor whose mined sets are empty
    contributes 0 and still counts. ``epsilon=None`` turns mining off (the GPW paper's "RAW" ablation)."""

    cfg_key = "MS"
    average = "all"

    # alpha = 2, beta = 50, lambda (base) = 0.5, epsilon = 0.1: MS loss paper Sec. 5.1 / GPW paper Sec. 6.
    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 epsilon: Optional[float] = 0.1) -> None:
        super().__init__(alpha, beta, base, None if epsilon is None else MultiSimilarityMiner(epsilon))

    @classmethod
    def from_config(cls, cfg) -> "MultiSimilarityLoss":
        epsilon = non_negative(cfg, "MODEL.LOSSES.MS.EPSILON") if flag(cfg, "MODEL.LOSSES.MS.MINE") else None
        return cls(**cls.scales_from_config(cfg), epsilon=epsilon)

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        return ms_weighting(sim, pos_mask, neg_mask, self.alpha, self.beta, self.base)
