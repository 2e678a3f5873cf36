"""BACKBONE_REGISTRY, declared with the other registries in ``reid.registry`` (kept here for imports)."""
from ...registry import BACKBONE_REGISTRY

__all__ = ["BACKBONE_REGISTRY"]
