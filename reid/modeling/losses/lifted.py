"""Lifted structure loss in the GPW paper's form (eq. 9: the generalised, per-anchor version of Hermans et al.
2017 of Oh Song et al. 2016), on cosine similarity:
L = 1/m sum_i [ log sum_{P_i} exp(-s_ij) + log sum_{N_i} exp(lambda + s_ik) ]_+ .
GPW weights (eqs. 10-11): softmax of -s over the positives, softmax of s over the negatives, while the hinge
is active (GPW paper Fig. 1c)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .families import MarginPairLoss
from .frame import PairMiner, masked_logsumexp
from .registry import LOSS_REGISTRY


@LOSS_REGISTRY.register("LiftedStructureLoss")
class LiftedStructureLoss(MarginPairLoss):
    cfg_key = "LIFTED"
    average = "all"

    # lambda = 1: the margin alpha = 1 of Oh Song et al. 2016 (the GPW paper gives no value).
    def __init__(self, margin: float = 1.0, miner: Optional[PairMiner] = None) -> None:
        super().__init__(margin, miner)

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        loss = torch.relu(masked_logsumexp(-sim, pos_mask) + masked_logsumexp(self.margin + sim, neg_mask))
        both = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        return torch.where(both, loss, torch.zeros_like(loss))
