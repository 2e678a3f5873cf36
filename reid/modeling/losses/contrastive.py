"""Contrastive loss on cosine similarity, GPW paper eq. 5 (Hadsell et al. 2006 in GPW form):
per anchor sum_{P_i} (1 - s_ij) + sum_{N_i} [s_ik - lambda]_+, averaged over all anchors.
GPW weights: 1 for every positive, 1 for negatives above lambda, 0 below (GPW paper Fig. 1a)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .families import MarginPairLoss
from .frame import PairMiner, masked_sum
from .registry import LOSS_REGISTRY


@LOSS_REGISTRY.register("ContrastiveLoss")
class ContrastiveLoss(MarginPairLoss):
    cfg_key = "CONTRASTIVE"
    average = "all"

    # lambda = 0.5: the GPW paper gives no value; 0.5 is its authors' setting in XBM (Wang et al. 2020, CVPR).
    def __init__(self, margin: float = 0.5, miner: Optional[PairMiner] = None) -> None:
        super().__init__(margin, miner)

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        return masked_sum(1.0 - sim, pos_mask) + masked_sum(torch.relu(sim - self.margin), neg_mask)
