"""Circle loss (Sun et al., CVPR 2020), pair-wise and class-level, from one pair of terms.

L = softplus( logsumexp_j(gamma a_n^j (s_n^j - D_n)) + logsumexp_i(-gamma a_p^i (s_p^i - D_p)) ),
a_p = [1 + m - s_p]_+, a_n = [s_n + m]_+ (detached: the paper treats them as constants), D_p = 1 - m, D_n = m.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._config import in_range, positive
from .frame import PairLoss, PairMiner, full_precision, masked_logsumexp, work_dtype
from .mining import build_miner
from .registry import LOSS_REGISTRY


def check_circle(m: float, gamma: float) -> None:
    if not 0.0 <= m < 1.0:
        raise ValueError(f"Circle relaxation m must be in [0, 1), got {m}")
    if not gamma > 0:
        raise ValueError(f"Circle scale gamma must be > 0, got {gamma}")


def circle_terms(sim: Tensor, m: float, gamma: float) -> Tuple[Tensor, Tensor]:
    """(positive exponent -gamma a_p (s - D_p), negative exponent gamma a_n (s - D_n)) for every entry."""
    a_p = torch.relu(1.0 + m - sim.detach())
    a_n = torch.relu(sim.detach() + m)
    return -gamma * a_p * (sim - (1.0 - m)), gamma * a_n * (sim - m)


def circle_logits(cosine: Tensor, labels: Tensor, m: float, gamma: float) -> Tensor:
    """(B, C) logits whose cross-entropy is the class-level Circle loss: gamma a_p (s_p - D_p) at the label,
    gamma a_n (s_n - D_n) elsewhere. Computed in float32 (float64 kept), whatever the input dtype."""
    with full_precision(cosine):
        cosine = cosine.to(work_dtype(cosine))
        pos_exp, neg_exp = circle_terms(cosine, m, gamma)
        target = F.one_hot(labels, cosine.shape[1]).bool()
        return torch.where(target, -pos_exp, neg_exp)


@LOSS_REGISTRY.register("PairwiseCircleLoss")
class PairwiseCircleLoss(PairLoss):
    """Pair-wise Circle loss on a P x K batch: every other same-id sample is a positive, every other-id sample
    a negative. Averaged over the anchors that have at least one positive and one negative (not, as PML does,
    over the anchors whose loss happens to be non-zero)."""

    cfg_key = "CIRCLE"
    average = "valid"

    # m = 0.25, gamma = 128: the Circle loss paper's re-ID setting (Sun et al. 2020, Sec. 4; PML's docstring).
    def __init__(self, m: float = 0.25, gamma: float = 128.0, miner: Optional[PairMiner] = None) -> None:
        super().__init__(miner)
        check_circle(m, gamma)
        self.m, self.gamma = float(m), float(gamma)

    @classmethod
    def from_config(cls, cfg) -> "PairwiseCircleLoss":
        return cls(m=in_range(cfg, "MODEL.LOSSES.CIRCLE.MARGIN", 0.0, 1.0),
                   gamma=positive(cfg, "MODEL.LOSSES.CIRCLE.GAMMA"),
                   miner=build_miner(cfg, "MODEL.LOSSES.CIRCLE.MINER"))

    def anchor_losses(self, sim: Tensor, pos_mask: Tensor, neg_mask: Tensor) -> Tensor:
        pos_exp, neg_exp = circle_terms(sim, self.m, self.gamma)
        loss = F.softplus(masked_logsumexp(pos_exp, pos_mask) + masked_logsumexp(neg_exp, neg_mask))
        both = pos_mask.any(dim=1) & neg_mask.any(dim=1)  # after mining: an emptied side means no loss
        return torch.where(both, loss, torch.zeros_like(loss))

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"
