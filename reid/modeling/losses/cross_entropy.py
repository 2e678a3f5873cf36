"""Softmax cross-entropy with label smoothing (Szegedy et al. 2016; eps = 0.1 in the re-ID bag of tricks,
Luo et al. 2019): target distribution (1 - eps) one-hot + eps / C. Applied to any classifier's logits, so
CLS_LAYER "circle" / "cosface" + this loss = class-level Circle / CosFace."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._config import in_range
from .frame import full_precision, work_dtype
from .registry import LOSS_REGISTRY


@LOSS_REGISTRY.register("CrossEntropyLoss")
class CrossEntropyLoss(nn.Module):
    kind = "class"
    cfg_key = "CE"

    def __init__(self, epsilon: float = 0.1) -> None:  # 0.1: bag of tricks (Luo et al. 2019)
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    @classmethod
    def from_config(cls, cfg) -> "CrossEntropyLoss":
        return cls(in_range(cfg, "MODEL.LOSSES.CE.EPSILON", 0.0, 1.0))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with full_precision(logits):
            return F.cross_entropy(logits.to(work_dtype(logits)), labels, label_smoothing=self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"
