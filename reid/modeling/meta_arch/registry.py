"""META_ARCH_REGISTRY, declared with the other registries in ``reid.registry`` (kept here for imports)."""
from ...registry import META_ARCH_REGISTRY

__all__ = ["META_ARCH_REGISTRY"]
