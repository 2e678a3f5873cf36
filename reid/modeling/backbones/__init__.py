"""Backbones behind BACKBONE_REGISTRY."""
from .registry import BACKBONE_REGISTRY
from .resnet import ResNet, build_resnet_backbone, load_imagenet, set_stage_stride


def build_backbone(cfg):
    """The backbone named by ``MODEL.BACKBONE.NAME``."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)


__all__ = ["BACKBONE_REGISTRY", "ResNet", "build_backbone", "build_resnet_backbone", "load_imagenet",
           "set_stage_stride"]
