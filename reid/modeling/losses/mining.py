"""Pair mining, kept apart from weighting so any pair loss can use any miner (``MODEL.LOSSES.<LOSS>.MINER``)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ._config import cfg_get, non_negative
from .frame import PairMiner
from .registry import MINER_REGISTRY


@MINER_REGISTRY.register("MultiSimilarityMiner")
class MultiSimilarityMiner(PairMiner):
    """MS loss mining (Wang et al. 2019; the GPW paper's valid-triplet hard mining, VTHM), margin ``epsilon``.

    A negative k of anchor i is kept if s_ik > min_{j in P_i} s_ij - epsilon; a positive j if
    s_ij < max_{k in N_i} s_ik + epsilon. An anchor without positives keeps no negatives and vice versa.
    """

    def __init__(self, epsilon: float = 0.1) -> None:  # 0.1: MS loss paper / GPW paper Sec. 6
        super().__init__()
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)

    @classmethod
    def from_config(cls, cfg) -> "MultiSimilarityMiner":
        return cls(non_negative(cfg, "MODEL.LOSSES.MS.EPSILON"))

    def forward(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tuple[Tensor, Tensor]:
        hardest_pos = sim.masked_fill(~pos_mask, float("inf")).amin(dim=1, keepdim=True)  # +inf: no positive
        hardest_neg = sim.masked_fill(~neg_mask, float("-inf")).amax(dim=1, keepdim=True)  # -inf: no negative
        return pos_mask & (sim < hardest_neg + self.epsilon), neg_mask & (sim > hardest_pos - self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


@MINER_REGISTRY.register("BatchHardMiner")
class BatchHardMiner(PairMiner):
    """Batch-hard mining (Hermans et al. 2017): per anchor only its least similar positive and most similar
    negative (ties: the first). Works on any similarity-like matrix (pass ``-distance`` for distances)."""

    @classmethod
    def from_config(cls, cfg) -> "BatchHardMiner":
        return cls()

    def forward(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tuple[Tensor, Tensor]:
        return (_one_hot_rows(sim.masked_fill(~pos_mask, float("inf")).argmin(dim=1), pos_mask),
                _one_hot_rows(sim.masked_fill(~neg_mask, float("-inf")).argmax(dim=1), neg_mask))


def _one_hot_rows(index: Tensor, allowed: Tensor) -> Tensor:
    """Row i selects column index[i] if that entry is allowed (an empty row selects nothing)."""
    picked = torch.zeros_like(allowed)
    picked[torch.arange(len(index), device=index.device), index] = True
    return picked & allowed


def build_miner(cfg, key: str) -> Optional[PairMiner]:
    """The miner named by config key ``key`` ("" = no mining: every pair of the masks is used)."""
    miner = MINER_REGISTRY.get(cfg_get(cfg, key), key)
    return None if miner is None else miner.from_config(cfg)
