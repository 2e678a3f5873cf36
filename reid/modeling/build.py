"""``build_model(cfg)``: the registered meta-architecture, on its device, in eval mode."""
from __future__ import annotations

from typing import Optional

from torch import nn

from ..utils.errors import ConfigError
from .meta_arch import META_ARCH_REGISTRY
from .video import build_temporal_pool


def build_model(cfg, num_classes: Optional[int] = None, pretrained: bool = True) -> nn.Module:
    """Build ``MODEL.META_ARCHITECTURE`` with ``num_classes`` (default ``MODEL.HEADS.NUM_CLASSES``).

    The model is returned in eval mode on the CPU: ``model(images)`` gives the (B, D) test embeddings.
    With no class count known (testing a model without its training set) a one-class classifier is built;
    classifier weights are never needed at test time. ``pretrained=False`` skips ImageNet initialisation
    (``MODEL.BACKBONE.PRETRAIN``) for callers that load trained weights over it anyway, so that evaluating a
    checkpoint never needs the network.
    """
    n = num_classes if num_classes is not None else cfg.MODEL.HEADS.NUM_CLASSES
    if n < 0:
        raise ConfigError(f"MODEL.HEADS.NUM_CLASSES must be >= 0, got {n}.")
    if not pretrained and cfg.MODEL.BACKBONE.PRETRAIN:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg, max(n, 1))
    pool = build_temporal_pool(cfg)
    if pool is not None:  # weights of a tracklet's frames (MODEL.TEMPORAL_POOL), saved with the model
        model.temporal_pool = pool
    return model.eval()
