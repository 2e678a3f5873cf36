"""Models: backbones, heads, losses and meta-architectures; ``build_model(cfg)`` is the entry point."""
from .backbones import BACKBONE_REGISTRY, build_backbone
from .build import build_model
from .meta_arch import META_ARCH_REGISTRY

__all__ = ["build_model", "build_backbone", "BACKBONE_REGISTRY", "META_ARCH_REGISTRY"]
