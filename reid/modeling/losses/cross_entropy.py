"""Softmax cross-entropy with label smoothing (Szegedy et al. 2016; eps = 0.1 in the re-ID bag of tricks,
Luo et al. 2019). Applied to any classifier's logits, so CLS_LAYER "circle" / "cosface" + this loss = class-level
Circle / CosFace.

Two smoothed targets exist in the peers (``MODEL.LOSSES.CE.SMOOTHING``): "uniform", (1 - eps) one-hot + eps / C
(Szegedy et al., torchreid, torch's ``label_smoothing``), and "others", 1 - eps at the label and eps / (C - 1) on
each other class (fast-reid's ``cross_entropy_loss``). Both are torch's loss with a matched smoothing value: eps'
with 1 - eps' + eps' / C = 1 - eps is eps C / (C - 1). fast-reid divides the summed loss by the number of samples
whose loss is not 0, which with eps > 0 is every sample (a smoothed target puts mass on every class)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import SMOOTHING_REGISTRY
from ._config import cfg_get, in_range
from .frame import full_precision, work_dtype
from .registry import LOSS_REGISTRY

SMOOTHING_REGISTRY.register("uniform", lambda eps, classes: eps)
SMOOTHING_REGISTRY.register("others", lambda eps, classes: eps * classes / (classes - 1) if classes > 1 else 0.0)


@LOSS_REGISTRY.register("CrossEntropyLoss")
class CrossEntropyLoss(nn.Module):
    kind = "class"
    cfg_key = "CE"

    # 0.1: bag of tricks (Luo et al. 2019)
    def __init__(self, epsilon: float = 0.1, smoothing: str = "uniform") -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label smoothing epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)
        self.smoothing = smoothing
        self._smoothing = SMOOTHING_REGISTRY.get(smoothing, "MODEL.LOSSES.CE.SMOOTHING")

    @classmethod
    def from_config(cls, cfg) -> "CrossEntropyLoss":
        return cls(in_range(cfg, "MODEL.LOSSES.CE.EPSILON", 0.0, 1.0), cfg_get(cfg, "MODEL.LOSSES.CE.SMOOTHING"))

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        with full_precision(logits):
            smoothing = self._smoothing(self.epsilon, logits.shape[1])
            return F.cross_entropy(logits.to(work_dtype(logits)), labels, label_smoothing=smoothing)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, smoothing={self.smoothing}"
