"""The "bag of tricks" baseline: backbone, global pooling, BNNeck, classifier (Luo et al. 2019)."""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ..backbones import backbone_features, build_backbone
from ..heads import EmbeddingHead
from ..losses import trains_classifier
from .registry import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register("Baseline")
class Baseline(nn.Module):
    """Eval: images -> (B, D) BN-ed embedding. Train: images, pids -> {"logits": [..], "features": [..]} (no
    logits and no classifier without a classification loss in MODEL.LOSSES.NAME). ``camids`` reach backbones
    with camera embeddings (a ViT with SIE); the others ignore them."""

    def __init__(self, cfg, num_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg)
        self.head = EmbeddingHead(cfg, self.backbone.out_channels, num_classes, classifier=trains_classifier(cfg))
        self.num_classes = num_classes
        self.embedding_dim = self.head.out_dim

    def forward(
        self, images: torch.Tensor, pids: Optional[torch.Tensor] = None, camids: Optional[torch.Tensor] = None
    ) -> Union[torch.Tensor, Dict[str, List[torch.Tensor]]]:
        fmap = backbone_features(self.backbone, images, camids)
        if not self.training:
            return self.head(fmap)
        feat, logits = self.head(fmap, pids)
        return {"logits": [logits] if logits is not None else [], "features": [feat]}
