"""Binomial deviance loss (Yi et al. 2014) in the GPW paper's form (eq. 12), on cosine similarity:
L = 1/m sum_i [ 1/|P_i| sum_{P_i} log(1 + exp(-alpha (s_ij - lambda)))
              + 1/|N_i| sum_{N_i} log(1 + exp(beta (s_ik - lambda))) ].
GPW weights (eqs. 13-14): sigmoids centred at lambda (GPW paper Fig. 1d)."""
from __future__ import annotations

from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from .families import ScaledPairLoss
from .frame import PairMiner, masked_mean
from .mining import build_miner
from .registry import LOSS_REGISTRY


@LOSS_REGISTRY.register("BinomialDevianceLoss")
class BinomialDevianceLoss(ScaledPairLoss):
    cfg_key = "BINOMIAL"
    average = "all"

    # alpha = 2, beta = 50, lambda = 0.5: GPW paper Sec. 6 ("in both Equation (13) and (17)"); the same as
    # Yi et al. 2014's alpha = 2, beta = 0.5 (threshold), cost C = 25 on negatives (beta = alpha * C).
    def __init__(self, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                 miner: Optional[PairMiner] = None) -> None:
        super().__init__(alpha, beta, base, miner)

    @classmethod
    def from_config(cls, cfg) -> "BinomialDevianceLoss":
        return cls(**cls.scales_from_config(cfg), miner=build_miner(cfg, "MODEL.LOSSES.BINOMIAL.MINER"))

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        return (masked_mean(F.softplus(-self.alpha * (sim - self.base)), pos_mask)
                + masked_mean(F.softplus(self.beta * (sim - self.base)), neg_mask))
