"""Classifier layers (``MODEL.HEADS.CLS_LAYER``): ``Cls(in_dim, num_classes, scale, margin)`` called as
``cls(features, labels=None)`` -> (B, C) logits. With labels (training) the margin is applied; without,
plain (scaled cosine) logits. Cross-entropy over the margin logits gives class-level Circle / CosFace."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...utils.errors import ConfigError
from ._config import cfg_get, positive, non_negative
from .circle import check_circle, circle_logits
from .frame import full_precision, work_dtype
from .registry import CLASSIFIER_REGISTRY


def cosface_logits(cosine: Tensor, labels: Tensor, scale: float, margin: float) -> Tensor:
    """CosFace / AM-softmax: s (cos theta_y - m) at the label, s cos theta_j elsewhere."""
    with full_precision(cosine):
        cosine = cosine.to(work_dtype(cosine))
        return scale * (cosine - margin * F.one_hot(labels, cosine.shape[1]).to(cosine.dtype))


def _check_sizes(in_dim: int, num_classes: int) -> None:
    if in_dim < 1 or num_classes < 1:
        raise ValueError(f"a classifier needs in_dim >= 1 and num_classes >= 1, got {in_dim}, {num_classes}")


@CLASSIFIER_REGISTRY.register("linear")
class LinearClassifier(nn.Module):
    """Bias-free linear layer, weights N(0, 0.001^2) (bag of tricks, Luo et al. 2019); scale/margin unused."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 1.0, margin: float = 0.0) -> None:
        super().__init__()
        _check_sizes(in_dim, num_classes)
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.normal_(self.weight, std=0.001)

    def forward(self, features: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return F.linear(features, self.weight)


@CLASSIFIER_REGISTRY.register("linear_bias")
class LinearBiasClassifier(LinearClassifier):
    """A linear layer with a bias, zero at the start (torchreid's ``classifier``, an nn.Linear); scale/margin
    unused."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 1.0, margin: float = 0.0) -> None:
        super().__init__(in_dim, num_classes, scale, margin)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, features: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        return F.linear(features, self.weight, self.bias)


class CosineClassifier(nn.Module):
    """Class proxies W; logits from cos(x, W_j) in float32. Subclasses add their margin when labels are given."""

    def __init__(self, in_dim: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        _check_sizes(in_dim, num_classes)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.scale, self.margin = float(scale), float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Linear's init; only directions matter

    def cosine(self, features: Tensor) -> Tensor:
        with full_precision(features):
            dtype = work_dtype(features)
            return F.linear(F.normalize(features.to(dtype), dim=1), F.normalize(self.weight.to(dtype), dim=1))

    def forward(self, features: Tensor, labels: Optional[Tensor] = None) -> Tensor:
        cosine = self.cosine(features)
        return self.scale * cosine if labels is None else self.margin_logits(cosine, labels)

    def margin_logits(self, cosine: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        num_classes, in_dim = self.weight.shape
        return f"in_dim={in_dim}, num_classes={num_classes}, scale={self.scale}, margin={self.margin}"


@CLASSIFIER_REGISTRY.register("circle")
class CircleClassifier(CosineClassifier):
    """Class-level Circle loss logits (Sun et al. 2020): scale = gamma, margin = m (re-ID: 128, 0.25)."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 128.0, margin: float = 0.25) -> None:
        super().__init__(in_dim, num_classes, scale, margin)
        check_circle(margin, scale)

    def margin_logits(self, cosine: Tensor, labels: Tensor) -> Tensor:
        return circle_logits(cosine, labels, self.margin, self.scale)


@CLASSIFIER_REGISTRY.register("cosface")
class CosFaceClassifier(CosineClassifier):
    """CosFace / AM-softmax logits (Wang et al. 2018: s = 64, m = 0.35)."""

    def __init__(self, in_dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__(in_dim, num_classes, scale, margin)
        if not margin >= 0:
            raise ValueError(f"CosFace margin must be >= 0, got {margin}")

    def margin_logits(self, cosine: Tensor, labels: Tensor) -> Tensor:
        return cosface_logits(cosine, labels, self.scale, self.margin)


def build_classifier(cfg, in_dim: int, num_classes: int) -> nn.Module:
    """The classifier named by MODEL.HEADS.CLS_LAYER, with MODEL.HEADS.SCALE and MODEL.HEADS.MARGIN."""
    name = cfg_get(cfg, "MODEL.HEADS.CLS_LAYER")
    cls = CLASSIFIER_REGISTRY.get(name)
    scale = positive(cfg, "MODEL.HEADS.SCALE")
    margin = non_negative(cfg, "MODEL.HEADS.MARGIN")
    init_std = non_negative(cfg, "MODEL.HEADS.CLS_INIT_STD")
    try:
        classifier = cls(in_dim, num_classes, scale, margin)
    except ValueError as e:
        raise ConfigError(f"MODEL.HEADS.CLS_LAYER {name!r} with MODEL.HEADS.SCALE={scale}, MODEL.HEADS.MARGIN="
                          f"{margin} (in_dim {in_dim}, {num_classes} classes): {e}.") from None
    if init_std > 0:  # fast-reid draws every classifier's weights (its cosine ones too) from N(0, 0.01^2)
        nn.init.normal_(classifier.weight, std=init_std)
    return classifier
