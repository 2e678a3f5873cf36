"""CLIP-ReID's image model (Li et al., AAAI 2023): a CLIP image encoder with a BNNeck head on each of its two
features, the one before CLIP's projection and the projected one.

Test embedding: both features concatenated (ViT-B/16: 768 + 512 = 1280-d; RN50: 2048 + 1024 = 3072-d), before
or after their BNNecks by ``MODEL.HEADS.TEST_FEAT`` (CLIP-ReID's TEST.NECK_FEAT, "before" in its configs). Each
head has its own classifier; the pair losses see both features. CLIP-ReID's first stage (learning one text prompt
per identity) and its image-to-text loss are training aids that the image model does not keep; this model trains
the image side with reid's losses.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Union

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..backbones import backbone_features, build_backbone
from ..backbones.clip import CLIPVisionTransformer, ModifiedResNet
from ..heads import EmbeddingHead
from ..losses import trains_classifier
from .registry import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register("CLIPReID")
class CLIPReID(nn.Module):
    """Eval: images, camids -> (B, C + P). Train: {"logits": [2], "features": [2]}."""

    def __init__(self, cfg, num_classes: int) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg)
        if not isinstance(self.backbone, (CLIPVisionTransformer, ModifiedResNet)):
            raise ConfigError(f"CLIPReID is built on a CLIP image encoder; MODEL.BACKBONE.NAME "
                              f"{cfg.MODEL.BACKBONE.NAME!r} is not one. Use clip_vit or clip_resnet.")
        classes = trains_classifier(cfg)
        self.heads = nn.ModuleList(EmbeddingHead(cfg, c, num_classes, embedding_dim=0, classifier=classes)
                                   for c in self.backbone.out_channels)
        self.num_classes = num_classes
        self.embedding_dim = sum(h.out_dim for h in self.heads)

    def forward(self, images: torch.Tensor, pids: Optional[torch.Tensor] = None,
                camids: Optional[torch.Tensor] = None) -> Union[torch.Tensor, Dict[str, List[torch.Tensor]]]:
        outputs = [head.features(f) for head, f in zip(self.heads, backbone_features(self.backbone, images, camids))]
        if not self.training:
            return torch.cat([head.test_feature(b, a) for head, (b, a) in zip(self.heads, outputs)], dim=1)
        logits = [head.classifier(a, pids) for head, (_, a) in zip(self.heads, outputs) if head.classifier is not None]
        return {"logits": logits, "features": [h.pair_feature(b, a) for h, (b, a) in zip(self.heads, outputs)]}
