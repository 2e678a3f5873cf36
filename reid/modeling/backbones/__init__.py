"""Backbones behind BACKBONE_REGISTRY (importing a module registers it): ResNet (+ IBN, non-local), OSNet,
BN-Inception."""
from . import osnet  # noqa: F401 - registers osnet_x1_0 ... osnet_ain_x0_25
from . import bninception  # noqa: F401 - registers bninception (the deep metric learning papers' network)
from .registry import BACKBONE_REGISTRY
from .resnet import ResNet, build_resnet_backbone, load_imagenet, set_stage_stride


def build_backbone(cfg):
    """The backbone named by ``MODEL.BACKBONE.NAME``."""
    return BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME)(cfg)


__all__ = ["BACKBONE_REGISTRY", "ResNet", "build_backbone", "build_resnet_backbone", "load_imagenet",
           "set_stage_stride"]
