"""Backbones behind BACKBONE_REGISTRY (importing a module registers it): ResNet (+ IBN, non-local), OSNet, ViT
(TransReID), CLIP's image encoders, Swin (SOLIDER), BN-Inception."""
from typing import Optional

import torch
from torch import nn

from . import bninception  # noqa: F401 - registers bninception (the deep metric learning papers' network)
from . import clip, osnet, swin, vit  # noqa: F401 - register clip_vit, clip_resnet; osnet_*; swin; vit
from .registry import BACKBONE_REGISTRY
from .resnet import ResNet, build_resnet_backbone, load_imagenet, set_stage_stride
from .vit import sie_cameras


def build_backbone(cfg):
    """The backbone named by ``MODEL.BACKBONE.NAME``."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)


def backbone_features(backbone: nn.Module, images: torch.Tensor, camids: Optional[torch.Tensor] = None):
    """``backbone(images)``, with the cameras for backbones that use them (``camera_aware``: SIE); the others
    ignore cameras."""
    if getattr(backbone, "camera_aware", False):
        return backbone(images, camids=camids)
    return backbone(images)


__all__ = ["backbone_features", "BACKBONE_REGISTRY", "ResNet", "build_backbone", "build_resnet_backbone", "load_imagenet",
           "set_stage_stride", "sie_cameras"]
